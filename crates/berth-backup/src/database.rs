//! The app's database as backups see it: size, dump, dump listing, restore into a
//! fresh database and the rename swap that makes a restore reversible.
//!
//! PostgreSQL only for now. On a host every tool runs as the database service's user,
//! which is the cluster's superuser through the local socket (peer authentication), so
//! no password is needed. Where no local socket reaches the server (a deployment's
//! backup pod), the tools connect over the network ([`Network`]) as the owning role,
//! its password in a private password file: never on a command line.

use std::path::Path;
use std::process::Stdio;

use berth_host::children::ChildRecords;
use berth_process::ChildCommand;
use berth_render::DatabasePlan;

use crate::error::{BackupError, Result};

/// The app's database, and where the tools berth runs against it are recorded while
/// they run (so a berth killed meanwhile leaves nothing running past the next command).
#[derive(Debug, Clone, Copy)]
pub struct Database<'a> {
    /// How to reach it.
    pub plan: &'a DatabasePlan,
    /// The instance's child records.
    pub children: &'a ChildRecords,
    /// Over the network as the owning role, rather than through the local socket as
    /// the database user.
    pub network: Option<Network<'a>>,
}

/// A server the tools reach over TCP, as the database's owning role.
#[derive(Debug, Clone, Copy)]
pub struct Network<'a> {
    /// Host name or address.
    pub host: &'a str,
    /// Port.
    pub port: &'a str,
    /// A libpq password file ([`passfile_text`]) only this user can read.
    pub passfile: &'a Path,
}

/// The text of a libpq password file giving `role` the password `password` on any
/// server and database: libpq reads it through `PGPASSFILE`, so the password is never
/// in a command line or an environment a process listing shows.
pub fn passfile_text(role: &str, password: &str) -> String {
    let escape = |s: &str| s.replace('\\', "\\\\").replace(':', "\\:");
    format!("*:*:*:{}:{}\n", escape(role), escape(password))
}

impl std::ops::Deref for Database<'_> {
    type Target = DatabasePlan;

    fn deref(&self) -> &DatabasePlan {
        self.plan
    }
}

/// Run one of the server's tools as the database user (with its supplementary
/// groups), in a process group of its own that dies with berth; stdout on success.
fn tool(db: &Database<'_>, program: &str, args: &[&str]) -> Result<String> {
    let path = db.bin_dir.join(program);
    let failed = |what: String| BackupError::Database {
        what,
        stderr: String::new(),
    };
    let mut cmd = ChildCommand::new(&path);
    cmd.args(args)
        // The tools' own working directory must be readable by that user.
        .current_dir("/")
        .die_with_parent();
    match &db.network {
        None => {
            cmd.user(db.user.as_deref())
                .env("PGHOST", &db.host)
                .env("PGPORT", &db.port)
                .envs(db.home.iter().map(|home| ("HOME", home)));
        }
        Some(net) => {
            cmd.env("PGHOST", net.host)
                .env("PGPORT", net.port)
                .env("PGUSER", &db.owner)
                .env("PGPASSFILE", net.passfile)
                // A server that stops answering fails the backup, not hangs it.
                .env("PGCONNECT_TIMEOUT", "30");
        }
    }
    let mut cmd = cmd
        .build()
        .map_err(|e| failed(format!("{program} cannot be prepared: {e}")))?;
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let (child, recorded) = db.children.spawn(&mut cmd, program)?;
    let out = child
        .wait_with_output()
        .map_err(|e| failed(format!("could not wait for `{}`: {e}", path.display())))?;
    drop(recorded);
    if !out.status.success() {
        return Err(BackupError::Database {
            what: format!("`{program} {}` failed ({})", args.join(" "), out.status),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One SQL statement through psql against `database`; its unaligned output.
fn sql(db: &Database<'_>, database: &str, statement: &str) -> Result<String> {
    tool(
        db,
        "psql",
        &[
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            database,
            "-c",
            statement,
        ],
    )
    .map(|s| s.trim().to_owned())
}

/// A SQL identifier, quoted.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A SQL string literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Size of the app's database in bytes.
pub fn size(db: &Database<'_>) -> Result<u64> {
    let out = sql(
        db,
        "postgres",
        &format!("SELECT pg_database_size({})", literal(&db.name)),
    )?;
    out.parse().map_err(|_| BackupError::Database {
        what: format!("unexpected answer to the database size query: `{out}`"),
        stderr: String::new(),
    })
}

/// The server's version, e.g. `15.10`.
pub fn server_version(db: &Database<'_>) -> Result<String> {
    // Over the network the owning role may be let into its own database only.
    let database = if db.network.is_some() {
        db.name.as_str()
    } else {
        "postgres"
    };
    sql(db, database, "SHOW server_version")
        .map(|v| v.split_whitespace().next().unwrap_or_default().to_owned())
}

/// The number of relations (tables, views, sequences …) outside the system schemas of
/// the app's database: 0 for one just created.
pub fn relation_count(db: &Database<'_>) -> Result<u64> {
    let out = sql(
        db,
        &db.name,
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') \
         AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'",
    )?;
    out.parse().map_err(|_| BackupError::Database {
        what: format!("unexpected answer to the relation count query: `{out}`"),
        stderr: String::new(),
    })
}

/// Whether a database of that name exists.
pub fn exists(db: &Database<'_>, name: &str) -> Result<bool> {
    let out = sql(
        db,
        "postgres",
        &format!(
            "SELECT count(*) FROM pg_database WHERE datname = {}",
            literal(name)
        ),
    )?;
    Ok(out == "1")
}

/// Refuses a restore over the network as a role that cannot create databases: the
/// dump is loaded into a new database that is then swapped in by renaming, which only
/// a role allowed to create databases may do (it must own the app's database, too).
pub fn check_can_create(db: &Database<'_>) -> Result<()> {
    let out = sql(
        db,
        "postgres",
        "SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user",
    )?;
    if out == "t" {
        return Ok(());
    }
    Err(BackupError::Cannot {
        what: format!(
            "the role `{}` may not create databases: a restore loads the dump into a new database and swaps it in by renaming",
            db.owner
        ),
        hint: format!(
            "as the database server's administrator, run `ALTER ROLE {} CREATEDB` (the role must own the database `{}`, too); nothing was changed",
            ident(&db.owner),
            db.name
        ),
    })
}

/// Sets every value of each column (`table.column`, or `schema.table.column`) that is
/// not null to the time `epoch`: what a seed does to the times its build ran at, so
/// two builds dump the same data. Names are quoted as they are given (lower case, as
/// PostgreSQL folds unquoted ones); a column that does not exist is an error.
pub fn set_columns_to_time(db: &Database<'_>, columns: &[String], epoch: u64) -> Result<()> {
    for column in columns {
        let quoted: Vec<String> = column.split('.').map(ident).collect();
        let Some((name, table)) = quoted.split_last().filter(|(_, t)| !t.is_empty()) else {
            return Err(BackupError::Database {
                what: format!("`{column}` is not `table.column`"),
                stderr: String::new(),
            });
        };
        sql(
            db,
            &db.name,
            &format!(
                "UPDATE {} SET {name} = to_timestamp({epoch}) WHERE {name} IS NOT NULL",
                table.join(".")
            ),
        )?;
    }
    Ok(())
}

/// `pg_dump --format=directory --jobs=N` into `dest` (which must not exist and whose
/// parent the database user can write). All jobs share one snapshot, so the dump is
/// consistent. Table data is left uncompressed: the archive compresses it once.
pub fn dump(db: &Database<'_>, dest: &Path, jobs: u32) -> Result<()> {
    let dest = dest.to_string_lossy();
    tool(
        db,
        "pg_dump",
        &[
            "--format=directory",
            &format!("--jobs={jobs}"),
            "--compress=0",
            "--no-sync",
            "-f",
            &dest,
            "-d",
            &db.name,
        ],
    )
    .map(|_| ())
}

/// `pg_dump --format=plain` into the file `dest` (whose directory the database user
/// can write), without owners (the load makes everything the app's role's, as
/// [`load_into_incoming`] says): SQL that names no catalog OID and, without
/// `--verbose`, no time, so the same database gives the same bytes on any cluster.
pub fn dump_sql(db: &Database<'_>, dest: &Path) -> Result<()> {
    let dest = dest.to_string_lossy();
    tool(
        db,
        "pg_dump",
        &[
            "--format=plain",
            "--no-owner",
            "--no-sync",
            "-f",
            &dest,
            "-d",
            &db.name,
        ],
    )
    .map(|_| ())
}

/// Name of the database a restore fills before it is swapped in.
pub fn incoming_name(db: &DatabasePlan) -> String {
    format!("{}__restoring", db.name)
}

/// Name the app's database is kept under while a restore is not committed.
pub fn previous_name(db: &DatabasePlan) -> String {
    format!("{}__before_restore", db.name)
}

/// Create the incoming database (dropping a leftover of an interrupted restore) and
/// `pg_restore --jobs=N` the dump into it, objects owned by the app's role.
pub fn restore_into_incoming(db: &Database<'_>, dump_dir: &Path, jobs: u32) -> Result<()> {
    let incoming = create_incoming(db)?;
    let dir = dump_dir.to_string_lossy();
    tool(
        db,
        "pg_restore",
        &[
            &format!("--jobs={jobs}"),
            "--exit-on-error",
            "--no-owner",
            &format!("--role={}", db.owner),
            "-d",
            &incoming,
            &dir,
        ],
    )
    .map(|_| ())
}

/// Create the incoming database (as [`restore_into_incoming`]) and run the SQL dump
/// `file` (a [`dump_sql`] the database user can read) into it with psql, in one
/// transaction that stops at the first error, as the app's role (`SET ROLE`, as
/// `pg_restore --no-owner --role` does): every object it makes is that role's.
pub fn load_into_incoming(db: &Database<'_>, file: &Path) -> Result<()> {
    let incoming = create_incoming(db)?;
    let file = file.to_string_lossy();
    tool(
        db,
        "psql",
        &[
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "--single-transaction",
            "-d",
            &incoming,
            "-o",
            "/dev/null",
            "-c",
            &format!("SET ROLE {}", ident(&db.owner)),
            "-f",
            &file,
        ],
    )
    .map(|_| ())
}

/// Creates the incoming database, owned by the app's role, dropping a leftover of an
/// interrupted restore first; its name.
fn create_incoming(db: &Database<'_>) -> Result<String> {
    let incoming = incoming_name(db);
    sql(
        db,
        "postgres",
        &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(&incoming)),
    )?;
    sql(
        db,
        "postgres",
        &format!(
            "CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING 'UTF8'",
            ident(&incoming),
            ident(&db.owner)
        ),
    )?;
    Ok(incoming)
}

/// Swap the incoming database in: the current one (if any) becomes the previous one.
///
/// Safe to run again after an interruption: `previous` exists only once the current
/// database has been moved aside by this swap (a restore refuses to begin while one
/// is left over), and a missing `incoming` means the swap is complete.
pub fn swap_in(db: &Database<'_>) -> Result<()> {
    let (incoming, previous) = (incoming_name(db), previous_name(db));
    if !exists(db, &incoming)? {
        return Ok(());
    }
    let rename = |from: &str, to: &str| {
        let statement = format!("ALTER DATABASE {} RENAME TO {}", ident(from), ident(to));
        sql(db, "postgres", &statement).or_else(|_| {
            // Open sessions keep a database from being renamed: end them, then retry.
            sql(
                db,
                "postgres",
                &format!(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = {}",
                    literal(from)
                ),
            )?;
            sql(db, "postgres", &statement)
        })
    };
    if !exists(db, &previous)? && exists(db, &db.name)? {
        rename(&db.name, &previous)?;
    }
    rename(&incoming, &db.name).map(|_| ())
}

/// Undo [`swap_in`] and drop the incoming database: the app's database is the one it
/// had before the restore began.
pub fn swap_back(db: &Database<'_>) -> Result<()> {
    let (incoming, previous) = (incoming_name(db), previous_name(db));
    if exists(db, &previous)? {
        sql(
            db,
            "postgres",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(&db.name)),
        )?;
        sql(
            db,
            "postgres",
            &format!(
                "ALTER DATABASE {} RENAME TO {}",
                ident(&previous),
                ident(&db.name)
            ),
        )?;
    }
    sql(
        db,
        "postgres",
        &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(&incoming)),
    )
    .map(|_| ())
}

/// Drop the database kept from before the restore (the restore is committed).
pub fn drop_previous(db: &Database<'_>) -> Result<()> {
    sql(
        db,
        "postgres",
        &format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            ident(&previous_name(db))
        ),
    )
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    /// A password with the file's separators and escapes reads back as itself: each
    /// `:` and `\` is escaped, as libpq's password file wants.
    #[test]
    fn a_password_file_escapes_its_separators() {
        assert_eq!(
            super::passfile_text("app", r"a:b\c"),
            "*:*:*:app:a\\:b\\\\c\n"
        );
    }
}
