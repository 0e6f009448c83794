-- 0050_microstamp_changes: an append-only, gap-free-ordered log of microstamp
-- code changes (registration, re-registration, revocation), so a server keeps
-- its lookup index current by reading the changes after its watermark instead
-- of reloading every code (docs/registry.md, "Incremental index").
--
-- microstamp_codes (0020) stays the current state; the application still only
-- inserts. A re-registration (a firing pin or breech block replaced, so new
-- codes) or a revocation is an INSERT into microstamp_changes; the trigger
-- below applies it to microstamp_codes as the table owner. A registration is
-- logged by a trigger on microstamp_codes.

CREATE SEQUENCE microstamp_change_seq;

CREATE TABLE microstamp_changes (
  -- Assigned by the trigger under a transaction-level lock (see below), so a
  -- reader that sees change n also sees every change before it.
  seq        bigint PRIMARY KEY,
  firearm_id bigint NOT NULL REFERENCES firearms (id),
  agency_id  bigint NOT NULL REFERENCES agencies (id),
  kind       text NOT NULL CHECK (kind IN ('register', 'replace', 'revoke')),
  fp_code    text CHECK (fp_code ~ '^[0-9A-Z]{8}$'),
  bf_code    text CHECK (bf_code ~ '^[0-3]{12}$'),
  reason     text NOT NULL DEFAULT '',
  created_by text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  CHECK (kind = 'revoke' OR fp_code IS NOT NULL OR bf_code IS NOT NULL),
  CHECK (kind <> 'revoke' OR (fp_code IS NULL AND bf_code IS NULL))
);
CREATE INDEX microstamp_changes_firearm_idx ON microstamp_changes (firearm_id, seq);

-- Codes registered before this migration, as registrations in firearm order.
INSERT INTO microstamp_changes (seq, firearm_id, agency_id, kind, fp_code, bf_code, created_by, created_at)
  SELECT nextval('microstamp_change_seq'), firearm_id, agency_id, 'register', fp_code, bf_code, created_by, created_at
  FROM microstamp_codes ORDER BY firearm_id;

-- Numbers are taken one writer at a time under an advisory lock held to
-- commit: a sequence alone hands out numbers in call order, but transactions
-- commit in any order, and a reader at watermark n would skip an n-1 that
-- commits later. Registrations are rare (a manufacturer's batch), so the
-- serialization costs nothing that matters.
CREATE FUNCTION microstamp_change_apply() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = pg_catalog, public AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(7050, 1);
  NEW.seq := nextval('microstamp_change_seq');
  IF NEW.kind = 'register' THEN
    -- Written by microstamp_codes_log after the codes row was inserted.
    IF NOT EXISTS (SELECT 1 FROM microstamp_codes c WHERE c.firearm_id = NEW.firearm_id
                   AND c.fp_code IS NOT DISTINCT FROM NEW.fp_code AND c.bf_code IS NOT DISTINCT FROM NEW.bf_code) THEN
      RAISE EXCEPTION 'a registration is logged from microstamp_codes only (firearm %)', NEW.firearm_id
        USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
  END IF;
  -- Only the agency that registered the codes changes them.
  IF NOT EXISTS (SELECT 1 FROM microstamp_codes c WHERE c.firearm_id = NEW.firearm_id
                 AND c.agency_id = NEW.agency_id) THEN
    RAISE EXCEPTION 'firearm % has no microstamp codes registered by agency %', NEW.firearm_id, NEW.agency_id
      USING ERRCODE = 'foreign_key_violation';
  END IF;
  IF NEW.kind = 'revoke' THEN
    DELETE FROM microstamp_codes WHERE firearm_id = NEW.firearm_id;
  ELSE
    UPDATE microstamp_codes SET fp_code = NEW.fp_code, bf_code = NEW.bf_code WHERE firearm_id = NEW.firearm_id;
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER microstamp_change_apply BEFORE INSERT ON microstamp_changes
  FOR EACH ROW EXECUTE FUNCTION microstamp_change_apply();

CREATE FUNCTION microstamp_codes_log() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = pg_catalog, public AS $$
BEGIN
  INSERT INTO microstamp_changes (firearm_id, agency_id, kind, fp_code, bf_code, created_by)
    VALUES (NEW.firearm_id, NEW.agency_id, 'register', NEW.fp_code, NEW.bf_code, NEW.created_by);
  RETURN NULL;
END
$$;
CREATE TRIGGER microstamp_codes_log AFTER INSERT ON microstamp_codes
  FOR EACH ROW EXECUTE FUNCTION microstamp_codes_log();

ALTER TABLE microstamp_changes ENABLE ROW LEVEL SECURITY;
CREATE POLICY microstamp_changes_read ON microstamp_changes FOR SELECT USING (ballistics_registry_visible(agency_id));
-- The application writes re-registrations and revocations of its own agency;
-- registrations come from the microstamp_codes trigger (run as the owner).
CREATE POLICY microstamp_changes_write ON microstamp_changes FOR INSERT
  WITH CHECK (ballistics_agency_own(agency_id) AND kind <> 'register');
GRANT SELECT, INSERT ON microstamp_changes TO ballistics_app;
