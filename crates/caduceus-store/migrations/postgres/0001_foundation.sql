-- Foundation: the persisted event spine, consumer cursors, API tokens.

-- Every security event, in spine order. `body` is the RFC 8785 canonical JSON
-- of the event (never patient data); `digest` is its SHA-256.
CREATE TABLE events (
    seq        BIGINT  PRIMARY KEY CHECK (seq > 0),
    uid        TEXT    NOT NULL UNIQUE,
    time_ms    BIGINT  NOT NULL,
    class_uid  BIGINT  NOT NULL,
    digest     BYTEA   NOT NULL CHECK (octet_length(digest) = 32),
    body       TEXT    NOT NULL
);

CREATE INDEX events_time ON events (time_ms);

-- How far each durable consumer of the spine has acknowledged.
CREATE TABLE consumer_cursors (
    consumer   TEXT    PRIMARY KEY,
    acked_seq  BIGINT  NOT NULL CHECK (acked_seq >= 0)
);

-- Bearer tokens for the API, stored only as SHA-256 of the secret.
CREATE TABLE api_tokens (
    token_hash  BYTEA   PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    token_id    TEXT    NOT NULL UNIQUE,
    label       TEXT    NOT NULL,
    role        TEXT    NOT NULL,
    created_ms  BIGINT  NOT NULL,
    expires_ms  BIGINT,
    revoked_ms  BIGINT
);
