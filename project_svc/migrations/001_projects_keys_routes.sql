-- Projects, their API keys and route configs (docs/api.md section 12.1). Owners are user ids of the
-- auth database, so there is no foreign key to users.
CREATE TABLE projects (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    description text,
    user_id text NOT NULL,
    active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX projects_user_id ON projects (user_id);

CREATE TABLE api_keys (
    id uuid PRIMARY KEY,
    key_hash text NOT NULL UNIQUE,          -- SHA-256 hex of the raw key, never the key
    prefix text NOT NULL,
    name text NOT NULL,
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id text NOT NULL,
    last_used_at timestamptz,
    expires_at timestamptz,
    revoked_at timestamptz,
    active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_keys_project_id ON api_keys (project_id);

CREATE TABLE route_configs (
    id uuid PRIMARY KEY,
    path text NOT NULL,
    -- the path with every :name reduced to : and no trailing /, for the global clash rule
    template text NOT NULL,
    method text NOT NULL,
    service text,
    upstream_url text,
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    rate_limit integer,
    cache_ttl integer,
    auth_required boolean NOT NULL DEFAULT true,
    active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT route_configs_project_path_method UNIQUE (project_id, path, method),
    CONSTRAINT route_configs_one_target CHECK ((service IS NULL) <> (upstream_url IS NULL))
);
CREATE UNIQUE INDEX route_configs_active_template ON route_configs (method, template)
    WHERE active;
CREATE INDEX route_configs_project_id ON route_configs (project_id);
