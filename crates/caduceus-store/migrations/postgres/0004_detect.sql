-- Detection: rules uploaded through the API, whether each rule loaded from
-- a directory is enabled, alerts (de-duplicated findings) with their triage
-- state, and suppressions. Alerts name patients only by pseudonymous id;
-- no column holds a name, identifier or other demographic value.

-- Sigma rules uploaded through the API, kept as the YAML they came as.
CREATE TABLE detect_rules (
    id          TEXT    PRIMARY KEY NOT NULL,
    title       TEXT    NOT NULL,
    yaml        TEXT    NOT NULL,
    enabled     BOOLEAN NOT NULL,
    created_by  TEXT    NOT NULL,
    created_ms  BIGINT  NOT NULL,
    updated_ms  BIGINT  NOT NULL
);

-- Rules loaded from directories are not stored; whether one is enabled is,
-- so that enabling or disabling it survives a restart.
CREATE TABLE detect_rule_state (
    rule_id     TEXT    PRIMARY KEY NOT NULL,
    enabled     BOOLEAN NOT NULL,
    updated_by  TEXT    NOT NULL,
    updated_ms  BIGINT  NOT NULL
);

-- One alert groups the findings of one rule about one entity (and, for
-- record-access analytics, one patient) within the group window.
-- `context`, `tags`, `patients`, `events` (spine seqs of the events that
-- fired) and `findings` (spine seqs of the Detection Finding events) are
-- JSON arrays, capped by the store.
CREATE TABLE detect_alerts (
    id                  TEXT    PRIMARY KEY NOT NULL,
    rule_id             TEXT    NOT NULL,
    rule_title          TEXT    NOT NULL,
    kind                TEXT    NOT NULL,
    severity            BIGINT  NOT NULL,
    entity              TEXT,
    group_key           TEXT    NOT NULL,
    status              TEXT    NOT NULL
        CHECK (status IN ('open', 'acknowledged', 'closed', 'suppressed')),
    assignee            TEXT,
    first_seen_ms       BIGINT  NOT NULL,
    last_seen_ms        BIGINT  NOT NULL,
    count               BIGINT  NOT NULL CHECK (count > 0),
    score               DOUBLE PRECISION,
    explanation         TEXT    NOT NULL,
    context             TEXT    NOT NULL,
    tags                TEXT    NOT NULL,
    patients            TEXT    NOT NULL,
    events              TEXT    NOT NULL,
    findings            TEXT    NOT NULL,
    created_ms          BIGINT  NOT NULL,
    updated_ms          BIGINT  NOT NULL,
    acknowledged_by     TEXT,
    acknowledged_ms     BIGINT,
    assigned_by         TEXT,
    assigned_ms         BIGINT,
    closed_by           TEXT,
    closed_ms           BIGINT,
    close_reason        TEXT,
    suppressed_by       TEXT,
    suppressed_ms       BIGINT,
    suppress_reason     TEXT,
    suppressed_until_ms BIGINT
);

CREATE INDEX detect_alerts_time ON detect_alerts (last_seen_ms, id);
CREATE INDEX detect_alerts_status ON detect_alerts (status, last_seen_ms);
CREATE INDEX detect_alerts_severity ON detect_alerts (severity, last_seen_ms);
CREATE INDEX detect_alerts_rule ON detect_alerts (rule_id, last_seen_ms);
CREATE INDEX detect_alerts_entity ON detect_alerts (entity, last_seen_ms);
CREATE INDEX detect_alerts_kind ON detect_alerts (kind, last_seen_ms);
CREATE INDEX detect_alerts_group ON detect_alerts (group_key, last_seen_ms);

-- While a suppression lasts, new findings of its rule (NULL: any rule)
-- about its entity (NULL: any entity) are stored as suppressed alerts.
CREATE TABLE detect_suppressions (
    id          TEXT    PRIMARY KEY NOT NULL,
    rule_id     TEXT,
    entity      TEXT,
    reason      TEXT    NOT NULL,
    created_by  TEXT    NOT NULL,
    created_ms  BIGINT  NOT NULL,
    expires_ms  BIGINT  NOT NULL
);

CREATE INDEX detect_suppressions_rule ON detect_suppressions (rule_id, entity, expires_ms);
CREATE INDEX detect_suppressions_expiry ON detect_suppressions (expires_ms);
