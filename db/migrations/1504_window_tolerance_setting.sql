-- The sequence send window's default tolerance joins the other defaults in settings (it was written
-- in the column default, save_sequence and the builder form).
-- depends: 1503_more_internal_functions
INSERT INTO settings (name, value, meaning) VALUES
  ('default_window_tolerance_minutes', 10,
   'a new sequence sends within this many minutes either side of its schedule time');
ALTER TABLE sequences ALTER COLUMN schedule_tolerance_minutes SET DEFAULT setting('default_window_tolerance_minutes');
