"""Everything two or more processes must agree on: names, wire formats, settings, messaging."""
