"""Social sign-in's wire: the providers (Google, LinkedIn, Facebook) as an OAuth 2 client
talks to them. Knows nothing of records, sites or HTTP serving (identity.services.accounts
.social does the joining)."""
