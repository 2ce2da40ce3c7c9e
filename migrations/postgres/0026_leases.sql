-- Several instances on one database share the Modbus gateways (and the singleton jobs) by leases.
-- A lease is held by one instance until `expires_ms` (the database's clock); renewing it keeps its
-- fence, a new holder raises the fence by one, so a fence names one holding. Releasing a lease
-- ends it now but keeps its fence. Instances say they are alive in `instances`; the gateways are
-- divided by the number of live ones.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    fence BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);

CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    seen_ms BIGINT NOT NULL
);
