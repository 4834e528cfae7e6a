-- Every rescore rewrites each contact's score row. Free space on each page lets
-- PostgreSQL update a row in place (a heap-only tuple) when its indexed columns are
-- unchanged, which is most rows of a nightly run, instead of adding an entry to both
-- indexes per contact.
ALTER TABLE contact_scores SET (fillfactor = 70);
