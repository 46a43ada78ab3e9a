//! Importing a price book (`tally prices import`): the whole file is
//! validated before anything is stored, so a book with an error never
//! replaces the one in force; a valid one is stored and is in force from then on.

use crate::pricing::{BookError, PriceBook};
use crate::store::{Store, StoreError};

/// A stored price book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The stored book's id.
    pub id: i64,
    /// How many versions it has, and the labels of the first and last.
    pub versions: usize,
    pub first: String,
    pub last: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file is not a valid price book; nothing was stored.
    #[error("{0}")]
    Invalid(BookError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Validate `text` (a price book TOML named `name`) and store it.
pub async fn import_price_book(
    store: &dyn Store,
    name: &str,
    text: &str,
) -> Result<Imported, ImportError> {
    let book = PriceBook::parse(text).map_err(ImportError::Invalid)?;
    let id = store.import_price_book(name, text).await?;
    let label = |v: Option<&crate::pricing::PriceVersion>| v.map(|v| v.label()).unwrap_or_default();
    Ok(Imported {
        id,
        versions: book.versions().len(),
        first: label(book.versions().first()),
        last: label(book.versions().last()),
    })
}
