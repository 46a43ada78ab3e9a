//! The price book in force: the newest imported one, else the shipped one.

use super::{BookError, PriceBook};
use crate::store::{PriceBooks, StoreError};

/// The price book in force could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StoredBookError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Imported books are validated on import, so this means the stored text
    /// was changed behind tally's back, or a newer tally wrote it.
    #[error("imported price book #{id} ({name}) no longer parses: {error}")]
    Unparsable {
        id: i64,
        name: String,
        error: BookError,
    },
}

/// The price book in force.
pub async fn current_book(store: &dyn PriceBooks) -> Result<PriceBook, StoredBookError> {
    Ok(book_in_force(store).await?.1)
}

/// The price book in force with its id (0 = the shipped one).
pub async fn book_in_force(store: &dyn PriceBooks) -> Result<(i64, PriceBook), StoredBookError> {
    match store.price_book().await? {
        Some(stored) => match PriceBook::parse(&stored.toml) {
            Ok(book) => Ok((stored.id, book)),
            Err(error) => Err(StoredBookError::Unparsable {
                id: stored.id,
                name: stored.name,
                error,
            }),
        },
        None => Ok((0, PriceBook::shipped())),
    }
}
