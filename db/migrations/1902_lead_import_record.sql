-- A staged CSV record travels as its fields joined by U+001F (the unit separator) in one text
-- column, split back in SQL (_lead_import_fields): binary COPY of a text[] costs the uploading
-- Python process ~8 µs a line (its array dumper), a text ~1 µs. Records that cannot be joined
-- unambiguously (a field holding U+001F, one empty field, no field) keep the text[] column.
-- depends: 1901_leads_key_phone_first

ALTER TABLE lead_import_lines ADD COLUMN record text;
COMMENT ON COLUMN lead_import_lines.record IS
  'The CSV record''s fields joined by U+001F (NULL when fields holds them; _lead_import_fields reads either).';
