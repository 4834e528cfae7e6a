-- Every rescore rewrites each contact's score row (a model change rewrites them all).
-- Half of each page is kept free so PostgreSQL can update a row in place (a heap-only
-- tuple) when its indexed columns are unchanged, which is nearly every row, instead
-- of adding an entry to both indexes per contact. Measured with the rescore bench:
-- at 70 % about half the updates were heap-only, at 50 % nearly all.
ALTER TABLE contact_scores SET (fillfactor = 50);
