-- Tenants that have (or had) webhook endpoints: the deliverer of every node
-- looks for work in these schemas only, so a database of many tenants without
-- webhooks costs it one small query per scan. A row is added with a tenant's
-- first endpoint and goes with the tenant.
CREATE TABLE public.webhook_tenants (
    tenant_id bigint PRIMARY KEY REFERENCES public.tenants (id) ON DELETE CASCADE
);
