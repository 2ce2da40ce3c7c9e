-- Accounts: users with argon2 password hashes, their role and scope, API tokens stored as hashes,
-- browser sessions, failed logins (for rate limiting across instances) and the audit log of every
-- state change made through HTTP or the account commands.

CREATE TABLE users (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    disabled BIGINT NOT NULL DEFAULT 0,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);

-- What a user may see: one row per county, township or village code; kind 'all' for everything.
CREATE TABLE user_scopes (
    user_id BIGINT NOT NULL,
    kind TEXT NOT NULL,
    code TEXT NOT NULL,
    PRIMARY KEY (user_id, kind, code)
);

-- The secret is never stored: only its SHA-256. `id` is the public half of the token.
CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL,
    label TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    revoked_ms BIGINT,
    last_used_ms BIGINT
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

CREATE TABLE http_sessions (
    id TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    expires_ms BIGINT NOT NULL
);
CREATE INDEX http_sessions_expiry ON http_sessions (expires_ms);

CREATE TABLE login_failures (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject TEXT NOT NULL,
    at_ms BIGINT NOT NULL
);
CREATE INDEX login_failures_subject ON login_failures (subject, at_ms);

CREATE TABLE audit_log (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    origin TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    outcome TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at_ms);
