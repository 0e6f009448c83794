-- 0002_signature_lz4: compress signature values and masks with lz4 in TOAST.
--
-- Measured on the Fadul set: only ~28 % of a breech-face signature's points are
-- valid (the annulus inside its bounding box); the rest are NaN runs, which lz4
-- compresses to almost nothing. Storing the values uncompressed (EXTERNAL, as
-- 0001 did) wrote ~1.1 MB of TOAST chunks per signature; compressed, the server
-- writes a fraction of that and spends less CPU per ingest (docs/benchmarks.md,
-- "Ingest"). lz4 rather than the default pglz: several times faster to compress
-- and decompress (shard workers read every signature at start-up). The bytes
-- read back are unchanged: compression is transparent and lossless.
-- Only rows written after this migration are compressed; existing rows keep
-- their storage until rewritten.
-- SET STORAGE recurses into the partitions; SET COMPRESSION does not (PostgreSQL
-- 15), and rows are stored by the partition's setting, so each partition is
-- altered too (the parent's setting is what future partitions copy).
ALTER TABLE signatures ALTER COLUMN "values" SET STORAGE EXTENDED;
ALTER TABLE signatures ALTER COLUMN "values" SET COMPRESSION lz4, ALTER COLUMN mask SET COMPRESSION lz4;
DO $$
DECLARE
  part regclass;
BEGIN
  FOR part IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'signatures'::regclass LOOP
    EXECUTE format('ALTER TABLE %s ALTER COLUMN "values" SET COMPRESSION lz4, ALTER COLUMN mask SET COMPRESSION lz4',
                   part);
  END LOOP;
END;
$$;
