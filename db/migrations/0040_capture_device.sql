-- The capture device of a scan (instrument make/model and serial, or camera),
-- given by the submitter with each upload (issue 6: "capture device"). Kept on
-- the casing next to the other submitter-supplied metadata so the examiner
-- view and exports show what produced the evidence image; '' = not given.
-- Validation (length, no control characters) is done by the ingest stage; the
-- CHECK is the backstop.
ALTER TABLE casings
  ADD COLUMN capture_device text NOT NULL DEFAULT ''
  CHECK (length(capture_device) <= 200 AND capture_device !~ '[[:cntrl:]]');
