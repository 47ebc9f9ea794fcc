//! The small dialect trait the repositories are generic over: what SQLite and PostgreSQL do not share
//! through sqlx's own traits. The SQL text is the same on both (`$N` placeholders); only how a
//! statement reports the rows it changed, and running a `QueryBuilder` from generic code, need the
//! concrete driver.

use sqlx::query::{Query, QueryAs, QueryScalar};
use sqlx::{Database, FromRow, QueryBuilder};

/// Implemented for `sqlx::Sqlite` and `sqlx::Postgres`.
pub(crate) trait Dialect: Database {
    /// The log's partition column, copied when a row is appended again (a quarantined message
    /// replayed) so the copy stays in its key's partition: `", partition"` on PostgreSQL, nothing
    /// on SQLite (its log has one partition and no such column).
    const LOG_PARTITION_COLUMN: &'static str;

    /// The number of rows a statement changed (each driver's result type has its own
    /// `rows_affected`, with no trait in common).
    fn rows_affected(result: &Self::QueryResult) -> u64;

    /// `q.build()`, with the arguments' lifetime shortened to the borrow of `q`. Each driver's
    /// arguments type allows that; a generic `Self::Arguments<'args>` does not, so generic code
    /// could only run the query while borrowing `q` for as long as `q` lives.
    fn build<'q>(q: &'q mut QueryBuilder<'_, Self>) -> Query<'q, Self, Self::Arguments<'q>>;

    /// `q.build_query_as()` (see [`Dialect::build`]).
    fn build_query_as<'q, T>(
        q: &'q mut QueryBuilder<'_, Self>,
    ) -> QueryAs<'q, Self, T, Self::Arguments<'q>>
    where
        T: for<'r> FromRow<'r, Self::Row>;

    /// `q.build_query_scalar()` (see [`Dialect::build`]).
    fn build_query_scalar<'q, T>(
        q: &'q mut QueryBuilder<'_, Self>,
    ) -> QueryScalar<'q, Self, T, Self::Arguments<'q>>
    where
        (T,): for<'r> FromRow<'r, Self::Row>;
}

impl Dialect for sqlx::Sqlite {
    const LOG_PARTITION_COLUMN: &'static str = "";

    fn rows_affected(result: &sqlx::sqlite::SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    fn build<'q>(
        q: &'q mut QueryBuilder<'_, sqlx::Sqlite>,
    ) -> Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
        q.build()
    }

    fn build_query_as<'q, T>(
        q: &'q mut QueryBuilder<'_, sqlx::Sqlite>,
    ) -> QueryAs<'q, sqlx::Sqlite, T, sqlx::sqlite::SqliteArguments<'q>>
    where
        T: for<'r> FromRow<'r, sqlx::sqlite::SqliteRow>,
    {
        q.build_query_as()
    }

    fn build_query_scalar<'q, T>(
        q: &'q mut QueryBuilder<'_, sqlx::Sqlite>,
    ) -> QueryScalar<'q, sqlx::Sqlite, T, sqlx::sqlite::SqliteArguments<'q>>
    where
        (T,): for<'r> FromRow<'r, sqlx::sqlite::SqliteRow>,
    {
        q.build_query_scalar()
    }
}

impl Dialect for sqlx::Postgres {
    const LOG_PARTITION_COLUMN: &'static str = ", partition";

    fn rows_affected(result: &sqlx::postgres::PgQueryResult) -> u64 {
        result.rows_affected()
    }

    fn build<'q>(
        q: &'q mut QueryBuilder<'_, sqlx::Postgres>,
    ) -> Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        q.build()
    }

    fn build_query_as<'q, T>(
        q: &'q mut QueryBuilder<'_, sqlx::Postgres>,
    ) -> QueryAs<'q, sqlx::Postgres, T, sqlx::postgres::PgArguments>
    where
        T: for<'r> FromRow<'r, sqlx::postgres::PgRow>,
    {
        q.build_query_as()
    }

    fn build_query_scalar<'q, T>(
        q: &'q mut QueryBuilder<'_, sqlx::Postgres>,
    ) -> QueryScalar<'q, sqlx::Postgres, T, sqlx::postgres::PgArguments>
    where
        (T,): for<'r> FromRow<'r, sqlx::postgres::PgRow>,
    {
        q.build_query_scalar()
    }
}
