"""The bulk import of profiles without HTTP: reading NDJSON or CSV as it streams in, checking
its lines on helper processes, and the per-line report. Writing is
`identity.services.profiles.import_profiles`; the request and the answer are the api's.

Nothing is imported here: a helper process imports `identity.imports.checking`, and
loads only what checks a line."""
