-- Identity: accounts, second factors, sessions; scoped, owned API keys.

-- Accounts. `user_id` is a UUID (also the WebAuthn user handle); `username`
-- is stored normalised (trimmed, lower case). `roles` is a comma-separated
-- list of role names. `password_hash` is an argon2id PHC string, or NULL for
-- an account that signs in only by passkey or single sign-on.
CREATE TABLE users (
    user_id          TEXT    PRIMARY KEY NOT NULL,
    username         TEXT    NOT NULL UNIQUE CHECK (length(username) BETWEEN 1 AND 128),
    display_name     TEXT    NOT NULL,
    roles            TEXT    NOT NULL,
    password_hash    TEXT,
    patient_ref      TEXT,
    external_issuer  TEXT,
    external_subject TEXT,
    disabled_ms      INTEGER,
    created_ms       INTEGER NOT NULL,
    updated_ms       INTEGER NOT NULL,
    UNIQUE (external_issuer, external_subject)
) STRICT;

-- One TOTP secret per account. `confirmed_ms` is NULL while enrolment waits
-- for a first code; `last_step` is the last time step accepted, so each code
-- is usable once (compare-and-set, no race).
CREATE TABLE totp_secrets (
    user_id       TEXT    PRIMARY KEY NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    secret        BLOB    NOT NULL,
    algorithm     TEXT    NOT NULL,
    digits        INTEGER NOT NULL,
    period        INTEGER NOT NULL,
    confirmed_ms  INTEGER,
    last_step     INTEGER NOT NULL DEFAULT -1
) STRICT;

-- Single-use recovery codes, stored as SHA-256 of the (high-entropy) code.
CREATE TABLE recovery_codes (
    user_id    TEXT    NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    code_hash  BLOB    NOT NULL CHECK (length(code_hash) = 32),
    used_ms    INTEGER,
    PRIMARY KEY (user_id, code_hash)
) STRICT;

-- WebAuthn credentials: the public key and counter, as JSON.
CREATE TABLE passkeys (
    credential_id  BLOB    PRIMARY KEY NOT NULL,
    user_id        TEXT    NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    name           TEXT    NOT NULL,
    passkey        TEXT    NOT NULL,
    created_ms     INTEGER NOT NULL,
    last_used_ms   INTEGER
) STRICT;

CREATE INDEX passkeys_user ON passkeys (user_id);

-- Sessions, stored as SHA-256 of the session secret.
CREATE TABLE sessions (
    session_hash       BLOB    PRIMARY KEY NOT NULL CHECK (length(session_hash) = 32),
    session_id         TEXT    NOT NULL UNIQUE,
    user_id            TEXT    NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    kind               TEXT    NOT NULL,
    methods            TEXT    NOT NULL,
    source             TEXT    NOT NULL,
    created_ms         INTEGER NOT NULL,
    last_seen_ms       INTEGER NOT NULL,
    expires_ms         INTEGER NOT NULL,
    elevated_until_ms  INTEGER,
    revoked_ms         INTEGER
) STRICT;

CREATE INDEX sessions_user ON sessions (user_id);

-- API keys: who issued them and what they may do (empty: all the role may).
ALTER TABLE api_tokens ADD COLUMN owner TEXT;
ALTER TABLE api_tokens ADD COLUMN scopes TEXT NOT NULL DEFAULT '';
