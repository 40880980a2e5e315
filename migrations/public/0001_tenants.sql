-- Tenants and their domains, as django-tenants keeps them.
CREATE TABLE public.tenants (
    id                bigserial PRIMARY KEY,
    slug              text NOT NULL UNIQUE CHECK (slug ~ '^[a-z][a-z0-9_]{0,47}$'),
    schema_name       text NOT NULL UNIQUE,
    name              text NOT NULL,
    anonymous_viewers boolean NOT NULL DEFAULT true,
    signup            boolean NOT NULL DEFAULT true,
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE public.domains (
    id         bigserial PRIMARY KEY,
    domain     text NOT NULL UNIQUE,
    tenant_id  bigint NOT NULL REFERENCES public.tenants (id) ON DELETE CASCADE,
    is_primary boolean NOT NULL DEFAULT false
);
CREATE INDEX domains_tenant_idx ON public.domains (tenant_id);
