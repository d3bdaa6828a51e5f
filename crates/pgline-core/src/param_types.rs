//! [`ParamTypes`]: parameter types remembered per SQL text, for statements
//! run on the unnamed statement (the PgBouncer-safe mode of both backends and
//! of the async shared lane).

use std::collections::{HashMap, VecDeque};

use tokio_postgres::types::Type;

use crate::error::{DbError, ErrorKind};

/// A bounded map from SQL text to its parameter types (FIFO eviction).
///
/// Types do not depend on which server connection answers, so one describe
/// per SQL text serves every later exchange on that connection or lane.
#[derive(Debug)]
pub struct ParamTypes {
    map: HashMap<Box<str>, Vec<Type>>,
    order: VecDeque<Box<str>>,
    capacity: usize,
}

impl ParamTypes {
    /// SQL texts a connection remembers unless told otherwise.
    pub const DEFAULT_CAPACITY: usize = 256;

    /// An empty cache holding at most `capacity` SQL texts (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// The remembered types of `sql`.
    pub fn get(&self, sql: &str) -> Option<Vec<Type>> {
        self.map.get(sql).cloned()
    }

    /// Remembers the types of `sql`, evicting the oldest text when full.
    pub fn insert(&mut self, sql: &str, types: Vec<Type>) {
        if self.map.contains_key(sql) {
            return;
        }
        while self.map.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        self.map.insert(sql.into(), types);
        self.order.push_back(sql.into());
    }

    /// An error unless `got` parameters match the statement's `types`, in the
    /// words tokio-postgres uses.
    pub fn check_count(types: &[Type], got: usize) -> Result<(), DbError> {
        if types.len() == got {
            return Ok(());
        }
        Err(DbError::new(ErrorKind::Rejected)
            .with_context(format!("expected {} parameters but got {got}", types.len())))
    }
}

impl Default for ParamTypes {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_oldest_text_when_full() {
        let mut cache = ParamTypes::new(2);
        cache.insert("a", vec![Type::INT4]);
        cache.insert("b", vec![]);
        cache.insert("a", vec![Type::TEXT]);
        cache.insert("c", vec![Type::TEXT]);
        assert_eq!(cache.get("a"), None);
        assert_eq!(cache.get("b"), Some(vec![]));
        assert_eq!(cache.get("c"), Some(vec![Type::TEXT]));
        assert!(ParamTypes::check_count(&[Type::INT4], 1).is_ok());
        let err = ParamTypes::check_count(&[Type::INT4], 2).unwrap_err();
        assert!(
            err.to_string().contains("expected 1 parameters but got 2"),
            "{err}"
        );
    }
}
