-- 0020_registries: firearm registries (manufacturer test fires, dealer sales,
-- transfers), microstamp codes, events, and the agencies allowed to trace.
-- Design and the laws served: docs/registry.md.
--
-- Scoping follows 0010: rows carry the agency that recorded them; row-level
-- security shows them to that agency, to agencies it shares with, to admins,
-- and (registry tables only) to law-enforcement agencies, which trace across
-- the state registry. The service adds the role + case-number rule on top and
-- audits every registry call (hash-chained audit_log of 0010).

-- A test fire registered by the manufacturer at manufacture (Maryland Public
-- Safety Article 5-131). Unused in this migration (PostgreSQL forbids using a
-- value added in the same transaction).
ALTER TYPE casing_source ADD VALUE IF NOT EXISTS 'manufacturer_test_fire';

-- Agencies whose examiners may trace firearms and resolve microstamp codes to
-- an identity (police forces, not laboratories-only or manufacturers).
CREATE TABLE law_enforcement_agencies (
  agency_id  bigint PRIMARY KEY REFERENCES agencies (id),
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION ballistics_is_law_enforcement() RETURNS boolean LANGUAGE sql STABLE SECURITY DEFINER
  SET search_path = pg_catalog, public AS $$
  SELECT EXISTS (SELECT 1 FROM law_enforcement_agencies WHERE agency_id = ballistics_current_agency())
$$;
-- Registry rows: the usual agency visibility, or any law-enforcement agency.
CREATE FUNCTION ballistics_registry_visible(owner bigint) RETURNS boolean LANGUAGE sql STABLE AS $$
  SELECT ballistics_agency_visible(owner) OR ballistics_is_law_enforcement()
$$;

-- A firearm as its manufacturer describes it. The serial is unique per
-- manufacturer (serials are not unique across makers).
CREATE TABLE firearms (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  agency_id       bigint NOT NULL REFERENCES agencies (id),  -- registering agency
  manufacturer    text NOT NULL CHECK (length(btrim(manufacturer)) > 0),
  make            text NOT NULL CHECK (length(btrim(make)) > 0),
  model           text NOT NULL CHECK (length(btrim(model)) > 0),
  serial          text NOT NULL CHECK (length(btrim(serial)) > 0),
  calibre         text NOT NULL CHECK (length(btrim(calibre)) > 0),
  -- Firing-pin impression shape, a class characteristic searches can filter on.
  fp_shape        text NOT NULL DEFAULT 'unknown'
                  CHECK (fp_shape IN ('circular', 'elliptical', 'rectangular', 'hemispherical', 'unknown')),
  manufactured_on date,
  created_by      text NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  UNIQUE (manufacturer, serial)
);

-- Casings known to come from a firearm: the manufacturer's test fire, a lab
-- test fire of a recovered or police-issued gun. A separate table rather than a
-- foreign key on casings.firearm_id: that column predates this registry and may
-- hold a laboratory's own firearm numbers.
CREATE TABLE firearm_casings (
  casing_id  bigint PRIMARY KEY REFERENCES casings (id),
  firearm_id bigint NOT NULL REFERENCES firearms (id),
  agency_id  bigint NOT NULL REFERENCES agencies (id),
  linked_by  text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX firearm_casings_firearm_idx ON firearm_casings (firearm_id);

-- Dealer sales and later transfers, in one history. The receiving party is
-- kept only as HMAC-SHA256(server key, purchaser reference): the reference id
-- of the state's licensing records is never stored in clear, yet the licensing
-- authority (holding the key) can match it, and the same reference always
-- gives the same value (history of one purchaser).
CREATE TYPE firearm_transfer_kind AS ENUM ('dealer_sale', 'private_transfer', 'dealer_transfer', 'seizure', 'return');
CREATE TABLE firearm_transfers (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  firearm_id     bigint NOT NULL REFERENCES firearms (id),
  agency_id      bigint NOT NULL REFERENCES agencies (id),
  kind           firearm_transfer_kind NOT NULL,
  dealer_licence text NOT NULL DEFAULT '',  -- FFL / state dealer licence, '' for private transfers
  occurred_on    date NOT NULL,
  party_ref_hmac text NOT NULL CHECK (party_ref_hmac ~ '^[0-9a-f]{64}$'),
  recorded_by    text NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now(),
  CHECK (kind <> 'dealer_sale' OR length(btrim(dealer_licence)) > 0)
);
CREATE INDEX firearm_transfers_firearm_idx ON firearm_transfers (firearm_id, occurred_on);
CREATE INDEX firearm_transfers_party_idx ON firearm_transfers (party_ref_hmac);

-- Microstamp codes per firearm (California Penal Code 31910(b)(7): at least two
-- places; here the firing-pin tip and the breech face). One code names one firearm.
CREATE TABLE microstamp_codes (
  firearm_id  bigint PRIMARY KEY REFERENCES firearms (id),
  agency_id   bigint NOT NULL REFERENCES agencies (id),
  fp_code     text UNIQUE CHECK (fp_code ~ '^[0-9A-Z]{8}$'),
  bf_code     text UNIQUE CHECK (bf_code ~ '^[0-3]{12}$'),
  created_by  text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  CHECK (fp_code IS NOT NULL OR bf_code IS NOT NULL)
);

-- An incident (shooting, recovery) at a time and place; it owns casings.
CREATE TABLE events (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  agency_id   bigint NOT NULL REFERENCES agencies (id),
  incident_id text NOT NULL CHECK (length(btrim(incident_id)) > 0),
  case_id     bigint REFERENCES cases (id),
  occurred_at timestamptz NOT NULL,
  lat         double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
  lon         double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
  place       text NOT NULL DEFAULT '',
  created_by  text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  UNIQUE (agency_id, incident_id)
);
CREATE TABLE event_casings (
  casing_id  bigint PRIMARY KEY REFERENCES casings (id),  -- a casing belongs to one event
  event_id   bigint NOT NULL REFERENCES events (id),
  agency_id  bigint NOT NULL REFERENCES agencies (id),
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX event_casings_event_idx ON event_casings (event_id);

ALTER TABLE law_enforcement_agencies ENABLE ROW LEVEL SECURITY;
ALTER TABLE firearms ENABLE ROW LEVEL SECURITY;
CREATE POLICY firearms_read ON firearms FOR SELECT USING (ballistics_registry_visible(agency_id));
CREATE POLICY firearms_write ON firearms FOR INSERT WITH CHECK (ballistics_agency_own(agency_id));
ALTER TABLE firearm_casings ENABLE ROW LEVEL SECURITY;
CREATE POLICY firearm_casings_read ON firearm_casings FOR SELECT USING (ballistics_registry_visible(agency_id));
CREATE POLICY firearm_casings_write ON firearm_casings FOR INSERT WITH CHECK (ballistics_agency_own(agency_id));
ALTER TABLE firearm_transfers ENABLE ROW LEVEL SECURITY;
CREATE POLICY firearm_transfers_read ON firearm_transfers FOR SELECT USING (ballistics_registry_visible(agency_id));
CREATE POLICY firearm_transfers_write ON firearm_transfers FOR INSERT WITH CHECK (ballistics_agency_own(agency_id));
ALTER TABLE microstamp_codes ENABLE ROW LEVEL SECURITY;
CREATE POLICY microstamp_codes_read ON microstamp_codes FOR SELECT USING (ballistics_registry_visible(agency_id));
CREATE POLICY microstamp_codes_write ON microstamp_codes FOR INSERT WITH CHECK (ballistics_agency_own(agency_id));
-- Events follow the evidence rules (own agency and shares), not the registry's.
ALTER TABLE events ENABLE ROW LEVEL SECURITY;
CREATE POLICY events_read ON events FOR SELECT USING (ballistics_agency_visible(agency_id));
CREATE POLICY events_write ON events FOR INSERT WITH CHECK (ballistics_agency_own(agency_id));
ALTER TABLE event_casings ENABLE ROW LEVEL SECURITY;
CREATE POLICY event_casings_read ON event_casings FOR SELECT USING (ballistics_agency_visible(agency_id));
CREATE POLICY event_casings_write ON event_casings FOR INSERT WITH CHECK (ballistics_agency_own(agency_id));

-- Append-only from the application: no UPDATE or DELETE grants (a correction
-- is a new transfer row; the audit trail records who did what).
GRANT SELECT, INSERT ON firearms, firearm_casings, firearm_transfers, microstamp_codes, events, event_casings
  TO ballistics_app;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO ballistics_app;
