-- Device inventory and vulnerability management: devices, SBOMs, advisories
-- (current revision and history), network sightings of devices not in the
-- inventory, and findings. `caduceus-devices` computes all of it; the store
-- keeps its JSON bodies as text, with the few columns it is looked up by,
-- and never parses them. No patient data is stored here: devices are
-- described by manufacturer, model, network identity and location, not by
-- who they are used on.

-- The inventory: one JSON body per device. `created_ms` is kept when a
-- device is replaced.
CREATE TABLE devices (
    id          TEXT    PRIMARY KEY NOT NULL,
    body        TEXT    NOT NULL,
    created_ms  BIGINT  NOT NULL,
    updated_ms  BIGINT  NOT NULL
);

-- One SBOM (the document as imported) per manufacturer, model and version;
-- a new one for a model version replaces the old.
CREATE TABLE device_sboms (
    id            TEXT    PRIMARY KEY NOT NULL,
    manufacturer  TEXT    NOT NULL,
    model         TEXT    NOT NULL,
    version       TEXT    NOT NULL,
    format        TEXT    NOT NULL,
    sha256        TEXT    NOT NULL,
    body          TEXT    NOT NULL,
    created_ms    BIGINT  NOT NULL,
    UNIQUE (manufacturer, model, version)
);

-- The current revision of each advisory (CSAF, OSV), as imported. Which
-- revision is current is the importer's decision.
CREATE TABLE device_advisories (
    id           TEXT    PRIMARY KEY NOT NULL,
    source       TEXT    NOT NULL,
    revision     TEXT    NOT NULL,
    modified     TEXT,
    sha256       TEXT    NOT NULL,
    body         TEXT    NOT NULL,
    imported_ms  BIGINT  NOT NULL
);

-- Every revision of an advisory ever imported, once each (without its
-- body); `n` keeps the order of import.
CREATE TABLE device_advisory_revisions (
    n            BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id           TEXT    NOT NULL,
    revision     TEXT    NOT NULL,
    modified     TEXT,
    sha256       TEXT    NOT NULL,
    imported_ms  BIGINT  NOT NULL,
    UNIQUE (id, revision)
);

-- Devices seen on the network (by IP or MAC address, the `key`) that are
-- not in the inventory, to be confirmed. `body` holds JSON hints (hostname,
-- protocols seen).
CREATE TABLE device_sightings (
    key            TEXT    PRIMARY KEY NOT NULL,
    first_seen_ms  BIGINT  NOT NULL,
    last_seen_ms   BIGINT  NOT NULL,
    flows          BIGINT  NOT NULL CHECK (flows >= 0),
    body           TEXT    NOT NULL
);

CREATE INDEX device_sightings_time ON device_sightings (last_seen_ms, key);

-- The current state of each finding (an advisory about a device): its
-- status (affected, fixed, not_affected, under_investigation) and, in
-- `body`, how it matched, its risk and the remediation.
CREATE TABLE device_findings (
    key            TEXT    PRIMARY KEY NOT NULL,
    device_id      TEXT    NOT NULL,
    advisory_id    TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    body           TEXT    NOT NULL,
    first_seen_ms  BIGINT  NOT NULL,
    updated_ms     BIGINT  NOT NULL
);

CREATE INDEX device_findings_device ON device_findings (device_id, key);
CREATE INDEX device_findings_status ON device_findings (status, key);
CREATE INDEX device_findings_advisory ON device_findings (advisory_id);
