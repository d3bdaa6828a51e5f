//! Input rules, applied by every store before it touches storage (the table
//! is in the crate docs). Error messages quote a value only once it has
//! passed its format rule, so a message never echoes control characters or
//! a megabyte of input.

use std::collections::HashSet;

use crate::error::DomainError;
use crate::model::{EventType, NewEvent, NewOrder, NewPanel};

/// The longest barcode, order number or panel type, in characters.
pub const MAX_TEXT_LEN: usize = 64;

/// Size limits a store enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The most panels one order may create (default 1000).
    pub max_panels_per_order: usize,
    /// The most rows one list call may return (default 1000).
    pub max_page_size: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_panels_per_order: 1000,
            max_page_size: 1000,
        }
    }
}

impl Limits {
    /// Sets [`Limits::max_panels_per_order`].
    #[must_use]
    pub fn with_max_panels_per_order(mut self, n: usize) -> Self {
        self.max_panels_per_order = n;
        self
    }

    /// Sets [`Limits::max_page_size`].
    #[must_use]
    pub fn with_max_page_size(mut self, n: u32) -> Self {
        self.max_page_size = n;
        self
    }
}

/// A validated [`NewOrder`]; barcodes sorted, so that concurrent orders lock
/// shared barcodes in the same order and cannot deadlock.
#[derive(Debug, Clone)]
pub(crate) struct ValidOrder {
    pub(crate) order_number: String,
    pub(crate) panel_type: String,
    pub(crate) barcodes: Vec<String>,
}

/// A validated [`NewPanel`].
#[derive(Debug, Clone)]
pub(crate) struct ValidPanel {
    pub(crate) barcode: String,
    pub(crate) panel_type: String,
}

/// A validated event request (the station's existence is checked by the store).
#[derive(Debug, Clone)]
pub(crate) struct ValidEvent {
    pub(crate) barcode: String,
    pub(crate) event_type: EventType,
    pub(crate) station: String,
}

pub(crate) fn order(input: &NewOrder, limits: &Limits) -> Result<ValidOrder, DomainError> {
    identifier("order_number", &input.order_number)?;
    panel_type("panel_type", &input.panel_type)?;
    let count = input.panels.len();
    if count == 0 || count > limits.max_panels_per_order {
        return Err(DomainError::validation(
            "panels",
            format!(
                "an order has 1 to {} panels, got {count}",
                limits.max_panels_per_order
            ),
        ));
    }
    let mut seen = HashSet::with_capacity(count);
    for (i, panel) in input.panels.iter().enumerate() {
        identifier(&format!("panels[{i}].barcode"), &panel.barcode)?;
        if !seen.insert(panel.barcode.as_str()) {
            return Err(DomainError::validation(
                format!("panels[{i}].barcode"),
                format!(
                    "barcode {} appears more than once in the order",
                    panel.barcode
                ),
            ));
        }
    }
    let mut barcodes: Vec<String> = input.panels.iter().map(|p| p.barcode.clone()).collect();
    barcodes.sort_unstable();
    Ok(ValidOrder {
        order_number: input.order_number.clone(),
        panel_type: input.panel_type.clone(),
        barcodes,
    })
}

pub(crate) fn panel(input: &NewPanel) -> Result<ValidPanel, DomainError> {
    identifier("barcode", &input.barcode)?;
    panel_type("panel_type", &input.panel_type)?;
    Ok(ValidPanel {
        barcode: input.barcode.clone(),
        panel_type: input.panel_type.clone(),
    })
}

pub(crate) fn event(barcode: &str, input: &NewEvent) -> Result<ValidEvent, DomainError> {
    identifier("barcode", barcode)?;
    let event_type: EventType = input.event_type.parse()?;
    if event_type == EventType::PanelCreated {
        return Err(DomainError::validation(
            "event_type",
            "PANEL_CREATED is recorded when a panel is created; a station records SCANNED, PASSED, FAILED or COMPLETED",
        ));
    }
    station(&input.station)?;
    Ok(ValidEvent {
        barcode: barcode.to_string(),
        event_type,
        station: input.station.clone(),
    })
}

pub(crate) fn barcode(value: &str) -> Result<(), DomainError> {
    identifier("barcode", value)
}

pub(crate) fn order_number(value: &str) -> Result<(), DomainError> {
    identifier("order_number", value)
}

pub(crate) fn page_size(limit: u32, limits: &Limits) -> Result<i64, DomainError> {
    if limit == 0 || limit > limits.max_page_size {
        return Err(DomainError::validation(
            "limit",
            format!("must be 1 to {}", limits.max_page_size),
        ));
    }
    Ok(i64::from(limit))
}

/// Barcodes and order numbers.
fn identifier(field: &str, value: &str) -> Result<(), DomainError> {
    if value.is_empty() || value.len() > MAX_TEXT_LEN {
        return Err(DomainError::validation(
            field,
            format!("must be 1 to {MAX_TEXT_LEN} characters"),
        ));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(DomainError::validation(
            field,
            "may contain only letters A-Z and a-z, digits, '.', '_' and '-'",
        ));
    }
    Ok(())
}

fn panel_type(field: &str, value: &str) -> Result<(), DomainError> {
    let chars = value.chars().count();
    if chars == 0 || chars > MAX_TEXT_LEN {
        return Err(DomainError::validation(
            field,
            format!("must be 1 to {MAX_TEXT_LEN} characters"),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() || is_invisible_format(c))
    {
        return Err(DomainError::validation(
            field,
            "must not contain control or invisible formatting characters",
        ));
    }
    if value.starts_with(char::is_whitespace) || value.ends_with(char::is_whitespace) {
        return Err(DomainError::validation(
            field,
            "must not start or end with whitespace",
        ));
    }
    Ok(())
}

fn station(value: &str) -> Result<(), DomainError> {
    let digits = value.strip_prefix("ST-").unwrap_or("");
    if !(2..=13).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DomainError::validation(
            "station",
            "must be ST- followed by 2 to 13 digits, e.g. ST-01",
        ));
    }
    Ok(())
}

/// Zero-width, bidirectional-control and byte-order-mark characters: they make
/// two panel types look the same, or a label read differently than stored.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        for ok in ["P-0001", "a", "A.b_c-9", &"x".repeat(64)] {
            assert!(identifier("barcode", ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "",
            &"x".repeat(65),
            "P 1",
            "P\0",
            "P\n1",
            "'; DROP TABLE panels; --",
            "P/1",
            "é",
        ] {
            assert!(identifier("barcode", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn panel_types() {
        for ok in [
            "Solar 60-cell",
            "'; DROP TABLE panels; --",
            "Ünïcödé panel",
            &"é".repeat(64),
        ] {
            assert!(panel_type("panel_type", ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "",
            " leading",
            "trailing ",
            "nul\0inside",
            "tab\tinside",
            "bell\u{7}",
            "del\u{7f}",
            "bidi\u{202E}override",
            "zero\u{200B}width",
            &"é".repeat(65),
        ] {
            assert!(panel_type("panel_type", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn stations() {
        for ok in ["ST-01", "ST-08", "ST-123", "ST-1234567890123"] {
            assert!(station(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "",
            "ST-1",
            "ST-",
            "st-01",
            "ST-0a",
            "ST-01 ",
            "ST-12345678901234",
            "XST-01",
        ] {
            assert!(station(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn events() {
        let ok = event("P-1", &NewEvent::new(EventType::Scanned, "ST-01"));
        assert!(ok.is_ok());
        let created = event("P-1", &NewEvent::new(EventType::PanelCreated, "ST-01"));
        assert!(
            matches!(created, Err(DomainError::Validation { ref field, .. }) if field == "event_type")
        );
        let unknown = NewEvent {
            event_type: "scanned".into(),
            station: "ST-01".into(),
        };
        assert!(
            event("P-1", &unknown).is_err(),
            "event types are exact words"
        );
    }

    #[test]
    fn orders_sort_barcodes_and_refuse_duplicates() {
        let limits = Limits::default();
        let valid = order(&NewOrder::new("MO-1", "Solar", ["P-2", "P-1"]), &limits);
        assert_eq!(
            valid.map(|o| o.barcodes).ok(),
            Some(vec!["P-1".into(), "P-2".into()])
        );
        let dup = order(
            &NewOrder::new("MO-1", "Solar", ["P-1", "P-2", "P-1"]),
            &limits,
        );
        assert!(
            matches!(dup, Err(DomainError::Validation { ref field, .. }) if field == "panels[2].barcode"),
            "{dup:?}"
        );
        let empty = order(
            &NewOrder::new("MO-1", "Solar", Vec::<String>::new()),
            &limits,
        );
        assert!(empty.is_err());
        let small = Limits::default().with_max_panels_per_order(2);
        assert!(order(&NewOrder::new("MO-1", "Solar", ["A", "B", "C"]), &small).is_err());
    }

    #[test]
    fn page_sizes() {
        let limits = Limits::default();
        assert!(page_size(0, &limits).is_err());
        assert_eq!(page_size(1000, &limits).ok(), Some(1000));
        assert!(page_size(1001, &limits).is_err());
    }
}
