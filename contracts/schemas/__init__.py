"""Request and response schemas of the public routes (used by the route table)."""
