-- 0001_initial: agencies, cases, casings, scans (+ original bytes), signatures.
--
-- Forward-only: once applied anywhere, this file is never edited (its SHA-256 is
-- recorded in schema_migrations and the server refuses to start if it changes);
-- later changes go into 0002_..., 0003_... . Applied by src/store/migrate.cc in
-- one transaction under an advisory lock.
--
-- Conventions: ids are bigint identities; timestamps are timestamptz (stored as
-- UTC); lengths are micrometres, as everywhere in the server (`pixel_um`).

-- A submitting laboratory / police agency. Cases are numbered per agency.
CREATE TABLE agencies (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name       text NOT NULL UNIQUE CHECK (length(btrim(name)) > 0),
  created_at timestamptz NOT NULL DEFAULT now()
);

-- A case file of an agency. The case number is the agency's own identifier,
-- unique only within that agency.
CREATE TABLE cases (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  agency_id   bigint NOT NULL REFERENCES agencies (id),
  case_number text NOT NULL CHECK (length(btrim(case_number)) > 0),
  created_at  timestamptz NOT NULL DEFAULT now(),
  UNIQUE (agency_id, case_number)
);

-- Where a casing comes from. A PostgreSQL enum rather than a CHECK constraint:
-- later issues add registry sources with `ALTER TYPE casing_source ADD VALUE ...`
-- (allowed inside a migration transaction since PostgreSQL 12, as long as that
-- same migration does not also use the new value).
CREATE TYPE casing_source AS ENUM (
  'crime_scene',        -- recovered at a scene: the usual query
  'test_fire',          -- fired in the lab from a seized firearm
  'recovered_firearm',  -- test fire of a firearm recovered without a case link yet
  'police_issued'       -- reference fire of a service weapon (exclusion registry)
);

-- One physical cartridge case (an exhibit of a case).
CREATE TABLE casings (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  agency_id    bigint NOT NULL REFERENCES agencies (id),
  case_id      bigint NOT NULL REFERENCES cases (id),
  exhibit_id   text NOT NULL CHECK (length(btrim(exhibit_id)) > 0),
  calibre      text NOT NULL CHECK (length(btrim(calibre)) > 0),
  source       casing_source NOT NULL,
  -- The firearms table arrives in a later migration, which adds the foreign key.
  firearm_id   bigint,
  captured_at  timestamptz,           -- when the scan was taken, if known
  submitted_by text NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  -- An exhibit number names one casing within a case (chain of custody).
  UNIQUE (case_id, exhibit_id)
);
CREATE INDEX casings_agency_idx ON casings (agency_id);
CREATE INDEX casings_firearm_idx ON casings (firearm_id) WHERE firearm_id IS NOT NULL;
CREATE INDEX casings_calibre_idx ON casings (calibre);

-- A decoded scan of a casing: what the file said about itself. The original
-- bytes live in scan_blobs so that this table stays narrow for listing queries.
CREATE TABLE scans (
  id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  casing_id           bigint NOT NULL REFERENCES casings (id),
  -- SHA-256 of the original file bytes (hex, lower case): chain of custody, and
  -- the key that makes ingest idempotent (same bytes -> same casing).
  sha256              text NOT NULL UNIQUE CHECK (sha256 ~ '^[0-9a-f]{64}$'),
  format              text NOT NULL CHECK (format IN ('x3p', 'png', 'tiff')),
  modality            text NOT NULL CHECK (modality IN ('3d', '2d')),
  pixel_um_x          double precision NOT NULL CHECK (pixel_um_x > 0 AND pixel_um_x < 'Infinity'),
  pixel_um_y          double precision NOT NULL CHECK (pixel_um_y > 0 AND pixel_um_y < 'Infinity'),
  width               integer NOT NULL CHECK (width > 0),
  height              integer NOT NULL CHECK (height > 0),
  header_length_unit  text NOT NULL,   -- 'm' / 'um' (X3P), '' or 'tiff-resolution' (images)
  missing_fraction    double precision NOT NULL CHECK (missing_fraction BETWEEN 0 AND 1),
  original_size_bytes bigint NOT NULL CHECK (original_size_bytes > 0),
  -- Scanner self-description and decoding details (manufacturer, model, serial,
  -- capture date as written, bit depth, data type, mask presence).
  scanner             jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX scans_casing_idx ON scans (casing_id);

-- The original file, byte for byte (evidence; re-normalization with a newer
-- pipeline starts from here). EXTERNAL storage: X3P is already a zip and images
-- are compressed, so TOAST compression would only cost time.
CREATE TABLE scan_blobs (
  scan_id bigint PRIMARY KEY REFERENCES scans (id),
  bytes   bytea NOT NULL
);
ALTER TABLE scan_blobs ALTER COLUMN bytes SET STORAGE EXTERNAL;

-- Normalized signatures. Hash-partitioned by casing into 16 partitions: each
-- partition is one shard that a shard worker loads in bulk (binary cursor / COPY),
-- and every signature of a casing lands in the same shard. The partition key must
-- be part of every unique constraint, hence PRIMARY KEY (id, casing_id).
CREATE TABLE signatures (
  id               bigint GENERATED ALWAYS AS IDENTITY,
  casing_id        bigint NOT NULL REFERENCES casings (id),
  scan_id          bigint NOT NULL REFERENCES scans (id),
  kind             text NOT NULL CHECK (kind IN ('BF', 'FP')),  -- breech face / firing pin
  modality         text NOT NULL CHECK (modality IN ('3d', '2d')),
  pipeline_version text NOT NULL CHECK (length(pipeline_version) > 0),
  pixel_um         double precision NOT NULL CHECK (pixel_um > 0 AND pixel_um < 'Infinity'),
  width            integer NOT NULL CHECK (width > 0),
  height           integer NOT NULL CHECK (height > 0),
  -- width*height float32, row-major, little-endian: exactly the bytes of
  -- Signature::values. NaN marks an invalid point (the single source of truth).
  "values"         bytea NOT NULL,
  -- Validity bitmap derived from the NaNs of "values" by the store: bit i of byte
  -- i/8 (least significant bit first) is 1 where point i is finite. Lets a reader
  -- count or crop valid area without decoding the floats.
  mask             bytea NOT NULL,
  valid_fraction   double precision NOT NULL CHECK (valid_fraction BETWEEN 0 AND 1),
  rms_height       double precision NOT NULL,
  valid_area_mm2   double precision NOT NULL CHECK (valid_area_mm2 >= 0),
  created_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (id, casing_id),
  -- One signature per region per pipeline version; re-normalization with a new
  -- pipeline adds rows rather than overwriting.
  UNIQUE (casing_id, kind, pipeline_version),
  CHECK (length("values") = 4::bigint * width * height),
  CHECK (length(mask) = (width::bigint * height + 7) / 8)
) PARTITION BY HASH (casing_id);
ALTER TABLE signatures ALTER COLUMN "values" SET STORAGE EXTERNAL;

CREATE TABLE signatures_p00 PARTITION OF signatures FOR VALUES WITH (MODULUS 16, REMAINDER 0);
CREATE TABLE signatures_p01 PARTITION OF signatures FOR VALUES WITH (MODULUS 16, REMAINDER 1);
CREATE TABLE signatures_p02 PARTITION OF signatures FOR VALUES WITH (MODULUS 16, REMAINDER 2);
CREATE TABLE signatures_p03 PARTITION OF signatures FOR VALUES WITH (MODULUS 16, REMAINDER 3);
CREATE TABLE signatures_p04 PARTITION OF signatures FOR VALUES WITH (MODULUS 16, REMAINDER 4);
CREATE TABLE signatures_p05 PARTITION OF signatures FOR VALUES WITH (MODULUS 16, REMAINDER 5);
CREATE TABLE signatures_p06 PARTITION OF signatures FOR VALUES WITH (MODULUS 16, REMAINDER 6);
CREATE TABLE signatures_p07 PARTITION OF signatures FOR VALUES WITH (MODULUS 16, REMAINDER 7);
CREATE TABLE signatures_p08 PARTITION OF signatures FOR VALUES WITH (MODULUS 16, REMAINDER 8);
CREATE TABLE signatures_p09 PARTITION OF signatures FOR VALUES WITH (MODULUS 16, REMAINDER 9);
CREATE TABLE signatures_p10 PARTITION OF signatures FOR VALUES WITH (MODULUS 16, REMAINDER 10);
CREATE TABLE signatures_p11 PARTITION OF signatures FOR VALUES WITH (MODULUS 16, REMAINDER 11);
CREATE TABLE signatures_p12 PARTITION OF signatures FOR VALUES WITH (MODULUS 16, REMAINDER 12);
CREATE TABLE signatures_p13 PARTITION OF signatures FOR VALUES WITH (MODULUS 16, REMAINDER 13);
CREATE TABLE signatures_p14 PARTITION OF signatures FOR VALUES WITH (MODULUS 16, REMAINDER 14);
CREATE TABLE signatures_p15 PARTITION OF signatures FOR VALUES WITH (MODULUS 16, REMAINDER 15);

CREATE INDEX signatures_scan_idx ON signatures (scan_id);

-- Shard workers LISTEN on ballistics_signatures to pick up new ingests without
-- polling. The payload is JSON {"id", "casing_id", "partition"} so a worker can
-- ignore other shards' rows; NOTIFY is delivered at commit, so a worker never
-- sees a signature whose transaction rolled back.
CREATE FUNCTION signatures_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('ballistics_signatures',
                    json_build_object('id', NEW.id, 'casing_id', NEW.casing_id,
                                      'partition', TG_TABLE_NAME)::text);
  RETURN NULL;
END;
$$;
CREATE TRIGGER signatures_notify_insert AFTER INSERT ON signatures
  FOR EACH ROW EXECUTE FUNCTION signatures_notify();
