-- pgline-mfg schema, version 1: orders, panels, stations and barcode events.
--
-- Every rule the application validates is also a constraint here, so a bug or
-- a hand-written statement cannot store what the API would refuse. Constraint
-- names are part of the contract: DomainError maps unique violations to
-- conflicts by name.

CREATE TABLE manufacturing_orders (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_number text        NOT NULL,
    panel_type   text        NOT NULL,
    status       text        NOT NULL DEFAULT 'PENDING',
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT manufacturing_orders_order_number_key UNIQUE (order_number),
    CONSTRAINT manufacturing_orders_order_number_format
        CHECK (order_number ~ '^[A-Za-z0-9._-]{1,64}$'),
    CONSTRAINT manufacturing_orders_panel_type_length
        CHECK (char_length(panel_type) BETWEEN 1 AND 64),
    CONSTRAINT manufacturing_orders_status_check
        CHECK (status IN ('PENDING', 'IN_PROGRESS', 'COMPLETED'))
);

CREATE TABLE panels (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    barcode    text        NOT NULL,
    panel_type text        NOT NULL,
    status     text        NOT NULL DEFAULT 'PENDING',
    order_id   bigint      REFERENCES manufacturing_orders (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT panels_barcode_key UNIQUE (barcode),
    CONSTRAINT panels_barcode_format CHECK (barcode ~ '^[A-Za-z0-9._-]{1,64}$'),
    CONSTRAINT panels_panel_type_length CHECK (char_length(panel_type) BETWEEN 1 AND 64),
    CONSTRAINT panels_status_check
        CHECK (status IN ('PENDING', 'IN_PROGRESS', 'COMPLETED', 'FAILED'))
);

-- Listing by status, oldest first.
CREATE INDEX panels_status_id_idx ON panels (status, id);
-- An order's panels (and the foreign key's checks on order deletion).
CREATE INDEX panels_order_id_idx ON panels (order_id);

CREATE TABLE stations (
    id         text        PRIMARY KEY,
    name       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT stations_id_format CHECK (id ~ '^ST-[0-9]{2,13}$')
);

INSERT INTO stations (id, name) VALUES
    ('ST-01', 'Station 1'),
    ('ST-02', 'Station 2'),
    ('ST-03', 'Station 3'),
    ('ST-04', 'Station 4'),
    ('ST-05', 'Station 5'),
    ('ST-06', 'Station 6'),
    ('ST-07', 'Station 7'),
    ('ST-08', 'Station 8');

CREATE TABLE barcode_events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    barcode    text        NOT NULL REFERENCES panels (barcode),
    event_type text        NOT NULL,
    -- NULL only for PANEL_CREATED, which the service records itself.
    station    text        REFERENCES stations (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT barcode_events_event_type_check
        CHECK (event_type IN ('PANEL_CREATED', 'SCANNED', 'PASSED', 'FAILED', 'COMPLETED')),
    CONSTRAINT barcode_events_station_required
        CHECK (event_type = 'PANEL_CREATED' OR station IS NOT NULL)
);

-- Station activity over a time window (/status figures).
CREATE INDEX barcode_events_station_created_at_idx ON barcode_events (station, created_at);
-- A panel's history, in order.
CREATE INDEX barcode_events_barcode_idx ON barcode_events (barcode, id);
