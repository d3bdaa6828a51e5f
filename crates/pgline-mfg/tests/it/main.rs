//! The domain test suite of pgline-mfg, written once as generic functions over
//! `S: ManufacturingStore` (`suite`) and run on every store by `store_suite!`;
//! plus PostgreSQL-only tests (migrations, schema, error classification).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;
mod postgres;
mod suite;

/// One test module per store: `store_suite!(module, constructor)` runs every
/// function of `suite` on the store `constructor().await` returns (a fresh,
/// empty, migrated store per test).
macro_rules! store_suite {
    ($backend:ident, $make:path) => {
        mod $backend {
            store_suite!(@tests $make;
                creates_an_order_with_its_panels,
                duplicate_order_number_is_a_conflict_naming_it,
                duplicate_barcode_is_a_conflict_and_writes_nothing,
                duplicate_barcodes_in_one_request_are_refused_before_storage,
                panels_per_order_are_limited,
                creating_a_panel_records_panel_created,
                scans_move_a_panel_through_production,
                transitions_follow_the_table_and_refusals_record_nothing,
                unknown_barcodes_and_orders_are_not_found,
                stations_and_event_types_are_validated,
                malformed_input_is_refused_before_storage,
                sql_looking_panel_types_are_stored_verbatim,
                lists_panels_by_status_with_a_limit,
                order_status_follows_its_panels,
                figures_count_orders_panels_and_station_activity,
                concurrent_events_on_one_panel_apply_one_at_a_time,
                concurrent_events_on_one_order_leave_the_right_status,
                concurrent_orders_sharing_barcodes_never_half_exist,
                json_has_the_contract_field_names,
            );
        }
    };
    (@tests $make:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let store = $make().await;
                crate::suite::$name(&store).await;
            }
        )*
    };
}

store_suite!(async_backend, crate::common::async_store);
store_suite!(memory, crate::common::memory_store);
store_suite!(sync_backend, crate::common::sync_store);
