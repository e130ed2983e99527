-- Foundation: the persisted event spine, consumer cursors, API tokens.

-- Every security event, in spine order. `body` is the RFC 8785 canonical JSON
-- of the event (never patient data); `digest` is its SHA-256.
CREATE TABLE events (
    seq        INTEGER PRIMARY KEY NOT NULL CHECK (seq > 0),
    uid        TEXT    NOT NULL UNIQUE,
    time_ms    INTEGER NOT NULL,
    class_uid  INTEGER NOT NULL,
    digest     BLOB    NOT NULL CHECK (length(digest) = 32),
    body       TEXT    NOT NULL
) STRICT;

CREATE INDEX events_time ON events (time_ms);

-- How far each durable consumer of the spine has acknowledged.
CREATE TABLE consumer_cursors (
    consumer   TEXT    PRIMARY KEY NOT NULL,
    acked_seq  INTEGER NOT NULL CHECK (acked_seq >= 0)
) STRICT;

-- Bearer tokens for the API, stored only as SHA-256 of the secret.
CREATE TABLE api_tokens (
    token_hash  BLOB    PRIMARY KEY NOT NULL CHECK (length(token_hash) = 32),
    token_id    TEXT    NOT NULL UNIQUE,
    label       TEXT    NOT NULL,
    role        TEXT    NOT NULL,
    created_ms  INTEGER NOT NULL,
    expires_ms  INTEGER,
    revoked_ms  INTEGER
) STRICT;
