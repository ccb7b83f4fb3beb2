-- compose.yaml's PostgreSQL, made once at its first start (docker-entrypoint-initdb.d): the
-- two roles of docs/serving.md, "Database roles". The owner migrates; the service serves
-- with rights to rows only, granted by each `identity db upgrade`.
create role identity_owner login password 'identity_owner';
create role identity login password 'identity';
create database identity owner identity_owner;
revoke all on database identity from public;
grant connect on database identity to identity;
