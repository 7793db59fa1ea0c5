-- Whether the provider of an identity was trusted to assert its address when it signed in
-- (docs/api.md section 16). Proving an account's address (a trusted provider's link, a
-- password reset, an email verification) removes the identities of untrusted ones: any
-- issuer can claim any address, so they may belong to someone else.
ALTER TABLE oauth_identities ADD COLUMN email_trusted boolean NOT NULL DEFAULT false;
