-- Sign-in with providers (docs/api.md section 16): an account may have no password (made by a
-- provider sign-in; forgot-password sets one), and any number of provider identities, each
-- (provider, subject) belonging to one account.
ALTER TABLE users ALTER COLUMN password_hash DROP NOT NULL;

CREATE TABLE oauth_identities (
    provider text NOT NULL,
    subject text NOT NULL,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- the address the provider vouched for when the identity was linked (for support)
    email text,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_sign_in_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, subject)
);
CREATE INDEX oauth_identities_user_id ON oauth_identities (user_id);
