-- 0030_reference_populations: reference populations for evidence strength
-- (docs/accuracy.md, "Evidence strength"; src/evidence/) — the known-match (KM)
-- and known-non-match (KNM) comparison scores of casings with a known source —
-- and the LR model fitted on each.
--
-- A model calibrates the scores of one normalization pipeline and scorer: a
-- score from another pipeline version must not be turned into an LR with it,
-- so the pipeline version is part of the population's key, and every model row
-- repeats it. Not agency evidence: every agency may read them (no RLS), only the
-- migrating/admin user writes them (`ballisticsctl evidence build-reference`).

CREATE TABLE reference_populations (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name             text NOT NULL CHECK (length(btrim(name)) > 0),
  kind             text NOT NULL CHECK (kind IN ('BF', 'FP')),
  calibre          text NOT NULL DEFAULT '',  -- '' = any calibre
  pipeline_version text NOT NULL CHECK (length(pipeline_version) > 0),
  km_pairs         integer NOT NULL CHECK (km_pairs >= 0),
  knm_pairs        integer NOT NULL CHECK (knm_pairs >= 0),
  created_at       timestamptz NOT NULL DEFAULT now(),
  UNIQUE (name, kind, calibre, pipeline_version)
);

-- One row per reference comparison: its truth and its CMC score.
CREATE TABLE reference_scores (
  population_id bigint NOT NULL REFERENCES reference_populations (id) ON DELETE CASCADE,
  same_source   boolean NOT NULL,
  cmc           integer NOT NULL CHECK (cmc >= 0),
  cells         integer NOT NULL CHECK (cells >= 1 AND cmc <= cells)
);
CREATE INDEX reference_scores_population_idx ON reference_scores (population_id);

-- The fitted model (beta-binomial fits, ELUB bounds, Song's binomial error
-- rates) as written by evidence::ModelToJson.
CREATE TABLE evidence_models (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  population_id    bigint NOT NULL UNIQUE REFERENCES reference_populations (id) ON DELETE CASCADE,
  model            text NOT NULL CHECK (length(model) > 0),
  pipeline_version text NOT NULL CHECK (length(pipeline_version) > 0),
  params           jsonb NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now()
);

GRANT SELECT ON reference_populations, reference_scores, evidence_models TO ballistics_app;
