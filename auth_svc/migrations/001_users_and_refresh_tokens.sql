-- Users and their refresh tokens (docs/api.md section 12.1). One-time tokens and refresh tokens
-- are stored only as SHA-256 hex.
CREATE TABLE users (
    id uuid PRIMARY KEY,
    email text NOT NULL UNIQUE,
    password_hash text NOT NULL,
    name text NOT NULL,
    role text NOT NULL DEFAULT 'DEVELOPER' CHECK (role IN ('ADMIN', 'DEVELOPER', 'VIEWER')),
    active boolean NOT NULL DEFAULT true,
    email_verified_at timestamptz,
    verification_token_hash text UNIQUE,
    verification_token_expires_at timestamptz,
    reset_token_hash text UNIQUE,
    reset_token_expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE refresh_tokens (
    id uuid PRIMARY KEY,
    token_hash text NOT NULL UNIQUE,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- every token descended from one login shares its family
    family_id uuid NOT NULL,
    expires_at timestamptz NOT NULL,
    revoked boolean NOT NULL DEFAULT false,
    -- set when the token was rotated: presenting it again is reuse
    replaced_by uuid,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_family_id ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_id ON refresh_tokens (user_id);
