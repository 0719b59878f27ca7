-- komlog-hub's PostgreSQL store (hub/src/store/postgres.rs), version 1.
-- Run by refinery at PgStore::connect, inside the schema the store uses.
-- Every text key is COLLATE "C", so listings sort bytewise as in the embedded store.

CREATE TABLE users (
    name       text COLLATE "C" PRIMARY KEY,
    created_us bigint NOT NULL
);

CREATE TABLE agents (
    owner       text COLLATE "C" NOT NULL,
    public_line text COLLATE "C" NOT NULL,
    id          text COLLATE "C" NOT NULL UNIQUE,
    PRIMARY KEY (owner, public_line)
);
-- One key identifies one agent across all users.
CREATE UNIQUE INDEX agents_public_line ON agents (public_line);

CREATE TABLE shares (
    owner      text COLLATE "C" NOT NULL,
    prefix     text COLLATE "C" NOT NULL,
    with_user  text COLLATE "C" NOT NULL,
    granted_us bigint NOT NULL,
    PRIMARY KEY (owner, prefix, with_user)
);
CREATE INDEX shares_with_user ON shares (with_user);

-- A metric; its kind ('d' datasource, 'p' datapoint, Kind::letter) is fixed by
-- its first write. count/first_k/last_k are kept by the writes (summaries).
CREATE TABLE metrics (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner    text COLLATE "C" NOT NULL,
    uri      text COLLATE "C" NOT NULL,
    kind     text NOT NULL,
    supplies text[],
    count    bigint NOT NULL DEFAULT 0,
    first_k  bytea,
    last_k   bytea,
    UNIQUE (owner, uri)
);

-- Samples, partitioned by month of their time (µs since the Unix epoch, from
-- the TimeUUID); partitions samples_yYYYYmMM are made on demand by the writer.
-- k is the TimeUUID's 16-byte sort key (TimeUuid::sort_key): bytewise order is
-- TimeUUID order, and t_us is a function of it, so (t_us, k) is that order too.
-- value is a datapoint's number (NULL for a datasource), for reductions.
CREATE TABLE samples (
    metric  bigint NOT NULL,
    t_us    bigint NOT NULL,
    k       bytea NOT NULL,
    content text NOT NULL,
    value   double precision,
    PRIMARY KEY (metric, t_us, k)
) PARTITION BY RANGE (t_us);

CREATE TABLE passwords (
    name text COLLATE "C" PRIMARY KEY,
    phc  text NOT NULL
);

CREATE TABLE tokens (
    digest     bytea PRIMARY KEY,
    owner      text COLLATE "C" NOT NULL,
    name       text COLLATE "C" NOT NULL,
    created_us bigint NOT NULL,
    UNIQUE (owner, name)
);

CREATE TABLE logins (
    agent_id text COLLATE "C" PRIMARY KEY,
    at_us    bigint NOT NULL
);

-- SharedLogins: challenges and sessions shared by the hubs of a cluster.
CREATE TABLE challenges (
    hash     bytea PRIMARY KEY,
    agent_id text NOT NULL,
    issued   timestamptz NOT NULL DEFAULT now(),
    used     boolean NOT NULL DEFAULT false
);
CREATE INDEX challenges_issued ON challenges (issued);

CREATE TABLE sessions (
    token_digest bytea PRIMARY KEY,
    sid          text COLLATE "C" NOT NULL,
    username     text COLLATE "C" NOT NULL,
    agent_id     text COLLATE "C" NOT NULL,
    created      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sessions_username ON sessions (username);

-- first(x ORDER BY ...): the first non-null value in that order (reductions).
CREATE FUNCTION komlog_first_sfunc(anyelement, anyelement) RETURNS anyelement
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS 'SELECT $1';
CREATE AGGREGATE komlog_first(anyelement) (
    SFUNC = komlog_first_sfunc,
    STYPE = anyelement,
    PARALLEL = SAFE
);
