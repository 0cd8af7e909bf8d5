-- A CSV import is validated in lanes that run side by side, one connection each: a line goes to
-- the lane of its phone field's last character (a valid number's last digit; no phone: lane 0), so
-- every line of one lead meets in one lane, in line order (the last still wins), and two lanes never
-- insert the same lead. One lane left a million-line import at ~19 s on one core of two.
-- depends: 2107_application_never_jits

CREATE TABLE lead_import_lanes (
  import_id       bigint NOT NULL REFERENCES lead_imports ON DELETE CASCADE,
  lane            smallint NOT NULL CHECK (lane >= 0),
  lines_processed integer NOT NULL DEFAULT 0 CHECK (lines_processed >= 0),
  PRIMARY KEY (import_id, lane)
);
COMMENT ON TABLE lead_import_lanes IS
  'The lanes of a CSV import''s validation and how far each has read the staged lines (lead_imports.lines_processed: the slowest).';

INSERT INTO settings (name, value, meaning) VALUES
  ('lead_import_lanes', 2,
   'a CSV import is validated in this many lanes side by side (a connection and a core each); set when an import starts');

-- Imports open now go on in lanes from where they are.
INSERT INTO lead_import_lanes (import_id, lane, lines_processed)
SELECT i.id, l.lane, i.lines_processed
  FROM lead_imports i, generate_series(0, setting('lead_import_lanes')::integer - 1) AS l(lane)
 WHERE i.status IN ('uploading', 'validating');
