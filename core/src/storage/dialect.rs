//! The small dialect trait the repositories are generic over: what SQLite and PostgreSQL do not share
//! through sqlx's own traits. The SQL text is the same on both (`$N` placeholders, which [`params`]
//! turns into `?` on SQLite); only how a statement reports the rows it changed, and running a
//! `QueryBuilder` from generic code, need the concrete driver.

use sqlx::query::{Query, QueryAs, QueryScalar};
use sqlx::{Database, FromRow, QueryBuilder};

/// Implemented for `sqlx::Sqlite` and `sqlx::Postgres`.
pub(crate) trait Dialect: Database {
    /// The log's partition column, copied when a row is appended again (a quarantined message
    /// replayed) so the copy stays in its key's partition: `", partition"` on PostgreSQL, nothing
    /// on SQLite (its log has one partition and no such column).
    const LOG_PARTITION_COLUMN: &'static str;

    /// Whether statements should bind anonymous `?` parameters rather than `$N` (see
    /// [`params`]).
    const ANONYMOUS_PARAMS: bool;

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
    const ANONYMOUS_PARAMS: bool = true;

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
    const ANONYMOUS_PARAMS: bool = false;

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

/// `n` numbered parameters from `$first`, comma-separated: an `IN (…)` list's body.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `sql`, written with `$1, $2, …` each used once and in that order, as `DB` binds it best. On
/// SQLite every `$N` becomes `?`: sqlx asks SQLite for each parameter's name when it binds, and
/// SQLite finds a name by walking the statement's list of names, so a statement with hundreds of
/// `$N` (an `IN` list of profile ids) cost the square of their number; `?` has no name. That
/// lookup was 12 % of the CPU of the audience stage catching up. A statement that repeats a `$N`
/// or numbers out of order cannot be written this way and is refused (a bug, caught by tests).
pub(crate) fn params<DB: Dialect>(sql: String) -> String {
    if !DB::ANONYMOUS_PARAMS {
        return sql;
    }
    let mut out = String::with_capacity(sql.len());
    let mut expected = 1_usize;
    let mut rest = sql.as_str();
    while let Some(at) = rest.find('$') {
        let digits = rest[at + 1..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        out.push_str(&rest[..at]);
        if digits == 0 {
            out.push('$');
        } else {
            let n: usize = rest[at + 1..at + 1 + digits].parse().unwrap_or(0);
            assert_eq!(
                n, expected,
                "parameters must be numbered $1, $2, … in the order they appear: {sql}"
            );
            expected += 1;
            out.push('?');
        }
        rest = &rest[at + 1 + digits..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_from_the_first_one_given() {
        assert_eq!(placeholders(1, 3), "$1, $2, $3");
        assert_eq!(placeholders(4, 1), "$4");
        assert_eq!(placeholders(7, 0), "");
    }

    #[test]
    fn numbered_parameters_become_anonymous_on_sqlite_and_stay_on_postgres() {
        let sql = "SELECT a FROM t WHERE k = $1 AND json_extract(b, '$.x') IN ($2, $3)".to_owned();
        assert_eq!(
            params::<sqlx::Sqlite>(sql.clone()),
            "SELECT a FROM t WHERE k = ? AND json_extract(b, '$.x') IN (?, ?)"
        );
        assert_eq!(params::<sqlx::Postgres>(sql.clone()), sql);
    }

    #[test]
    #[should_panic(expected = "numbered $1, $2")]
    fn a_repeated_parameter_is_refused_on_sqlite() {
        params::<sqlx::Sqlite>("SELECT 1 WHERE $1 = $1".to_owned());
    }

    #[tokio::test]
    async fn anonymous_parameters_bind_in_order_on_sqlite() {
        let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect("sqlite::memory:")
            .await
            .unwrap();
        let sql = params::<sqlx::Sqlite>("SELECT $1 || $2 || $3".to_owned());
        let got: String = sqlx::query_scalar(&sql)
            .bind("a")
            .bind("b")
            .bind("c")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(got, "abc");
    }
}
