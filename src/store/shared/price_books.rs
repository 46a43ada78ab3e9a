//! Stored price books.

use super::*;

#[async_trait]
impl<S: Pooled> PriceBooks for S {
    async fn price_book_id(&self) -> Result<Option<i64>> {
        Ok(on_pool!(self.pool(), |p| {
            sqlx::query_scalar("select max(id) from price_books")
                .fetch_one(p)
                .await?
        }))
    }

    async fn price_book(&self) -> Result<Option<StoredPriceBook>> {
        Ok(on_pool!(self.pool(), |p| {
            sqlx::query_as("select id, name, toml from price_books order by id desc limit 1")
                .fetch_optional(p)
                .await?
        }))
    }

    async fn import_price_book(&self, name: &str, toml: &str) -> Result<i64> {
        Ok(on_pool!(self.pool(), |p| {
            sqlx::query_scalar(
                "insert into price_books (imported_at, name, toml) values ($1, $2, $3) returning id",
            )
            .bind(now_micros())
            .bind(name)
            .bind(toml)
            .fetch_one(p)
            .await?
        }))
    }
}
