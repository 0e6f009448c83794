-- 0010_api_security: API tokens, roles, agency scoping (row-level security),
-- searches / comparisons / decisions / leads, and the hash-chained audit trail.
--
-- Numbered 0010 to leave 0003..0009 to the data-path stages.
--
-- Who connects how:
--   * The server's "system" connection (the database URL's own user, owner of
--     the tables) authenticates tokens and appends to the audit trail.
--   * Everything that touches evidence runs as ballistics_app, a role without
--     superuser or BYPASSRLS, with the caller's agency in the session setting
--     ballistics.agency_id (and ballistics.role). Row-level security below then
--     hides other agencies' rows even if a query in the service forgot to filter:
--     agency scoping is enforced twice, in the service and here.
-- Superusers and table owners bypass RLS; that is why the service never reads
-- evidence on its system connection.

-- Roles are cluster-wide: another database of the same cluster may have created
-- it already (tests create one database each, concurrently).
DO $$
BEGIN
  CREATE ROLE ballistics_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
  NULL;
END;
$$;
-- The migrating user must be allowed to SET ROLE ballistics_app.
DO $$
BEGIN
  IF NOT pg_has_role(current_user, 'ballistics_app', 'MEMBER') THEN
    EXECUTE format('GRANT ballistics_app TO %I', current_user);
  END IF;
END;
$$;

CREATE TYPE api_role AS ENUM ('technician', 'examiner', 'agency_reader', 'admin');

-- API tokens: only the SHA-256 of the secret is kept (a 32-byte random secret has
-- enough entropy that a plain hash cannot be brute-forced; no salt needed).
CREATE TABLE api_tokens (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  agency_id    bigint NOT NULL REFERENCES agencies (id),
  role         api_role NOT NULL,
  holder       text NOT NULL CHECK (length(btrim(holder)) > 0),
  token_sha256 bytea NOT NULL UNIQUE CHECK (length(token_sha256) = 32),
  created_at   timestamptz NOT NULL DEFAULT now(),
  expires_at   timestamptz,
  revoked_at   timestamptz
);

-- Casings of owner_agency_id are readable by reader_agency_id (sharing by policy,
-- e.g. a regional task force).
CREATE TABLE agency_shares (
  owner_agency_id  bigint NOT NULL REFERENCES agencies (id),
  reader_agency_id bigint NOT NULL REFERENCES agencies (id),
  created_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (owner_agency_id, reader_agency_id),
  CHECK (owner_agency_id <> reader_agency_id)
);

-- Upload idempotency: a retried upload (same client_request_id) returns the
-- casing of the first attempt.
CREATE TABLE upload_requests (
  agency_id         bigint NOT NULL REFERENCES agencies (id),
  client_request_id text NOT NULL CHECK (length(client_request_id) BETWEEN 1 AND 200),
  sha256            text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
  casing_id         bigint NOT NULL REFERENCES casings (id),
  created_at        timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (agency_id, client_request_id)
);

-- A search run for a casing, and the candidates it returned (one row per
-- candidate and list). The comparison rows carry the scores and registration
-- the examiner reviews.
CREATE TABLE searches (
  id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  agency_id          bigint NOT NULL REFERENCES agencies (id),
  query_casing_id    bigint NOT NULL REFERENCES casings (id),
  requested_by       text NOT NULL,
  request            jsonb NOT NULL DEFAULT '{}'::jsonb,
  status             text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done', 'failed', 'cancelled')),
  partial            boolean NOT NULL DEFAULT false,
  shards_answered    integer NOT NULL DEFAULT 0,
  shards_total       integer NOT NULL DEFAULT 0,
  signatures_scanned bigint NOT NULL DEFAULT 0,
  created_at         timestamptz NOT NULL DEFAULT now(),
  finished_at        timestamptz
);
CREATE INDEX searches_query_idx ON searches (query_casing_id);

CREATE TABLE comparisons (
  id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  search_id           bigint NOT NULL REFERENCES searches (id),
  agency_id           bigint NOT NULL REFERENCES agencies (id),  -- of the search
  reference_casing_id bigint NOT NULL REFERENCES casings (id),   -- the query
  target_casing_id    bigint NOT NULL REFERENCES casings (id),   -- the candidate
  list                text NOT NULL CHECK (list IN ('BF', 'FP', 'combined')),
  rank                integer NOT NULL CHECK (rank >= 1),
  coarse_score        double precision,
  score               double precision,
  -- Scores and consensus registration per kind, as the search engine returned them.
  detail              jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at          timestamptz NOT NULL DEFAULT now(),
  UNIQUE (search_id, list, rank)
);
CREATE INDEX comparisons_target_idx ON comparisons (target_casing_id);

CREATE TYPE decision_outcome AS ENUM ('hit', 'no_hit', 'inconclusive');

-- Examiner decisions; several per comparison are kept (a second examiner's
-- verification), never overwritten.
CREATE TABLE decisions (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  comparison_id bigint NOT NULL REFERENCES comparisons (id),
  agency_id     bigint NOT NULL REFERENCES agencies (id),
  outcome       decision_outcome NOT NULL,
  examiner      text NOT NULL,
  notes         text NOT NULL DEFAULT '',
  decided_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX decisions_comparison_idx ON decisions (comparison_id);

-- A confirmed hit links two casings (stored with casing_a < casing_b so a pair
-- appears once). The graph of leads is walked transitively by GetLinked.
CREATE TABLE leads (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  agency_id   bigint NOT NULL REFERENCES agencies (id),
  casing_a    bigint NOT NULL REFERENCES casings (id),
  casing_b    bigint NOT NULL REFERENCES casings (id),
  decision_id bigint NOT NULL REFERENCES decisions (id),
  created_at  timestamptz NOT NULL DEFAULT now(),
  CHECK (casing_a < casing_b),
  UNIQUE (agency_id, casing_a, casing_b)
);
CREATE INDEX leads_a_idx ON leads (casing_a);
CREATE INDEX leads_b_idx ON leads (casing_b);

-- Append-only audit trail with a SHA-256 hash chain: row_hash =
-- SHA-256(prev_hash || canonical JSON of the row's content), computed by the
-- server (src/store/audit_store.cc) under an advisory lock so rows chain in seq
-- order. Editing, inserting or deleting a row breaks the chain from there on
-- (`ballisticsctl audit verify`). occurred_at is text so that the hashed bytes
-- do not depend on the session's DateStyle or TimeZone.
CREATE TABLE audit_log (
  seq         bigint PRIMARY KEY CHECK (seq > 0),
  occurred_at text NOT NULL,
  request_id  text NOT NULL,
  token_id    bigint,
  actor       text NOT NULL,
  agency      text NOT NULL,
  role        text NOT NULL,
  method      text NOT NULL,
  status      text NOT NULL,
  records     text NOT NULL,
  detail      text NOT NULL,
  prev_hash   text NOT NULL CHECK (prev_hash ~ '^[0-9a-f]{64}$'),
  row_hash    text NOT NULL CHECK (row_hash ~ '^[0-9a-f]{64}$')
);
-- A backstop against accidental edits by the owner; a superuser can still
-- bypass it (session_replication_role = replica), which the hash chain detects.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP;
END;
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- ---------------------------------------------------------------- row-level security
-- The caller's agency and role, as the service set them for this session or
-- transaction; NULL/'' when unset, which makes every scoped table look empty.
CREATE FUNCTION ballistics_current_agency() RETURNS bigint LANGUAGE sql STABLE AS $$
  SELECT nullif(current_setting('ballistics.agency_id', true), '')::bigint
$$;
CREATE FUNCTION ballistics_is_admin() RETURNS boolean LANGUAGE sql STABLE AS $$
  SELECT coalesce(current_setting('ballistics.role', true), '') = 'admin'
$$;
-- Own agency, or an agency that shares with it, or an admin.
CREATE FUNCTION ballistics_agency_visible(owner bigint) RETURNS boolean LANGUAGE sql STABLE AS $$
  SELECT ballistics_is_admin() OR owner = ballistics_current_agency()
      OR EXISTS (SELECT 1 FROM agency_shares s
                  WHERE s.owner_agency_id = owner AND s.reader_agency_id = ballistics_current_agency())
$$;
CREATE FUNCTION ballistics_agency_own(owner bigint) RETURNS boolean LANGUAGE sql STABLE AS $$
  SELECT ballistics_is_admin() OR owner = ballistics_current_agency()
$$;

ALTER TABLE cases ENABLE ROW LEVEL SECURITY;
CREATE POLICY cases_agency ON cases USING (ballistics_agency_visible(agency_id))
  WITH CHECK (ballistics_agency_own(agency_id));
ALTER TABLE casings ENABLE ROW LEVEL SECURITY;
CREATE POLICY casings_agency ON casings USING (ballistics_agency_visible(agency_id))
  WITH CHECK (ballistics_agency_own(agency_id));
-- Child rows follow their casing (the subquery is itself subject to casings' policy).
ALTER TABLE scans ENABLE ROW LEVEL SECURITY;
CREATE POLICY scans_agency ON scans USING (EXISTS (SELECT 1 FROM casings c WHERE c.id = casing_id));
ALTER TABLE scan_blobs ENABLE ROW LEVEL SECURITY;
CREATE POLICY scan_blobs_agency ON scan_blobs USING (EXISTS (SELECT 1 FROM scans s WHERE s.id = scan_id));
ALTER TABLE signatures ENABLE ROW LEVEL SECURITY;
CREATE POLICY signatures_agency ON signatures USING (EXISTS (SELECT 1 FROM casings c WHERE c.id = casing_id));
ALTER TABLE upload_requests ENABLE ROW LEVEL SECURITY;
CREATE POLICY upload_requests_agency ON upload_requests USING (ballistics_agency_own(agency_id));
ALTER TABLE searches ENABLE ROW LEVEL SECURITY;
CREATE POLICY searches_agency ON searches USING (ballistics_agency_own(agency_id));
ALTER TABLE comparisons ENABLE ROW LEVEL SECURITY;
CREATE POLICY comparisons_agency ON comparisons USING (ballistics_agency_own(agency_id));
ALTER TABLE decisions ENABLE ROW LEVEL SECURITY;
CREATE POLICY decisions_agency ON decisions USING (ballistics_agency_own(agency_id));
ALTER TABLE leads ENABLE ROW LEVEL SECURITY;
CREATE POLICY leads_agency ON leads USING (ballistics_agency_own(agency_id));

-- What ballistics_app may touch at all. No grant on api_tokens or audit_log:
-- only the system connection reads tokens and appends audit rows.
GRANT SELECT, INSERT, UPDATE ON agencies, cases, casings TO ballistics_app;
GRANT SELECT ON agency_shares TO ballistics_app;
GRANT SELECT, INSERT ON scans, scan_blobs, signatures, upload_requests, comparisons, decisions, leads
  TO ballistics_app;
GRANT SELECT, INSERT, UPDATE ON searches TO ballistics_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO ballistics_app;
