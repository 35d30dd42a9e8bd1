//! The ticket itself, held in escrow (issue 24): what a seller attaches to
//! a listing (its barcode text and/or file), parsed at the edge, and its
//! SQL (the `passes` table, migration 0007). The tickets store calls these
//! inside its own transactions, so a pass changes hands with its ticket:
//! listed with it, handed to the buyer by the sale, back to nobody (or to
//! the holder who resold it) when the listing leaves sale unsold.
//!
//! The barcode and the file are sealed by the [`Vault`] before they reach
//! the database and are opened only for the pass's holder; they never go
//! into events, logs or errors (not even their `Debug`).

use common::db::{Db, DbError, Executor, Row, Tx, now_millis, parse_uuid, query, query_scalar};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::vault::{Sealed, Unreadable, Vault};

/// The largest file a pass may carry (2 MiB).
pub const MAX_FILE_BYTES: usize = 2 * 1024 * 1024;
/// The message for a barcode of the wrong length.
pub const BARCODE_LENGTH: &str = "Barcode must be between 4 and 512 characters";
/// The message for a barcode already on a live listing or holding.
pub const BARCODE_TAKEN: &str = "This ticket is already listed or held by someone";
/// The message for a file that is none of the accepted types.
pub const FILE_TYPE: &str = "File must be a PDF, PNG or JPEG";
/// The message for a file over [`MAX_FILE_BYTES`].
pub const FILE_TOO_LARGE: &str = "File must be at most 2 MiB";

/// The barcodes [`Barcode::parse`] accepts, as a pattern: blank (no
/// barcode), or 4 to 512 characters once trimmed.
pub const BARCODE_PATTERN: &str = concat!(
    "^[",
    common::trimmed_space!(),
    "]*(?:[^",
    common::trimmed_space!(),
    r"][\s\S]{2,510}[^",
    common::trimmed_space!(),
    "][",
    common::trimmed_space!(),
    "]*)?$"
);

/// A barcode's content as printed under the code: trimmed, 4 to 512
/// characters. Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Barcode(String);

impl std::fmt::Debug for Barcode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Barcode([redacted])")
    }
}

impl Barcode {
    /// `None` for no barcode (absent or blank).
    pub fn parse(raw: Option<&str>) -> Result<Option<Self>, &'static str> {
        let Some(text) = raw.map(str::trim).filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        if !(4..=512).contains(&text.chars().count()) {
            return Err(BARCODE_LENGTH);
        }
        Ok(Some(Self(text.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The kinds of file a pass may carry, known from their first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    Pdf,
    Png,
    Jpeg,
}

impl FileType {
    /// The type of a file from its first bytes (its signature), whatever it
    /// claims to be.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(b"%PDF-") {
            Some(Self::Pdf)
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Self::Png)
        } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Self::Jpeg)
        } else {
            None
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            Self::Pdf => "application/pdf",
            Self::Png => "image/png",
            Self::Jpeg => "image/jpeg",
        }
    }

    fn from_mime(mime: &str) -> Option<Self> {
        [Self::Pdf, Self::Png, Self::Jpeg].into_iter().find(|t| t.mime() == mime)
    }

    fn extension(self) -> &'static str {
        match self {
            Self::Pdf => "pdf",
            Self::Png => "png",
            Self::Jpeg => "jpg",
        }
    }
}

/// A ticket's file as uploaded: its sniffed type, a safe name, its bytes.
#[derive(Clone)]
pub struct PassFile {
    pub kind: FileType,
    pub name: String,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for PassFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PassFile")
            .field("kind", &self.kind)
            .field("size", &self.bytes.len())
            .finish()
    }
}

impl PassFile {
    /// A file of `bytes` sent as `name`: `None` when its type is none of
    /// the accepted ones. The name keeps its last path segment without
    /// control characters or quotes, at most 100 characters; the type's
    /// own name when nothing is left.
    pub fn new(name: Option<&str>, bytes: Vec<u8>) -> Option<Self> {
        let kind = FileType::sniff(&bytes)?;
        let name = name
            .unwrap_or_default()
            .rsplit(['/', '\\'])
            .next()
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control() && !matches!(c, '"' | ';'))
            .take(100)
            .collect::<String>()
            .trim()
            .to_owned();
        let name = if name.is_empty() { format!("ticket.{}", kind.extension()) } else { name };
        Some(Self { kind, name, bytes })
    }
}

/// What a seller attaches to a new listing.
#[derive(Debug, Clone, Default)]
pub struct NewPass {
    pub barcode: Option<Barcode>,
    pub file: Option<PassFile>,
}

impl NewPass {
    pub fn is_empty(&self) -> bool {
        self.barcode.is_none() && self.file.is_none()
    }
}

/// The file of a pass, as the API describes it (never its bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FileInfo {
    /// `application/pdf`, `image/png` or `image/jpeg` (from its bytes).
    #[serde(rename = "type")]
    pub kind: String,
    /// In bytes.
    pub size: i64,
    pub name: String,
}

/// What a pass carries, without its content: for My tickets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PassSummary {
    /// Whether it carries a barcode.
    pub barcode: bool,
    pub file: Option<FileInfo>,
}

/// Who may read a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PassState {
    /// On an unsold listing: its seller holds it.
    Listed,
    /// Sold: its buyer holds it.
    Held,
    /// Its holder put it up for sale again, and holds it until that sells.
    Relisted,
    /// Nobody: withdrawn or ended unsold, or resold.
    Gone,
}

impl PassState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Listed => "listed",
            Self::Held => "held",
            Self::Relisted => "relisted",
            Self::Gone => "gone",
        }
    }

    fn parse(text: &str) -> Result<Self, DbError> {
        [Self::Listed, Self::Held, Self::Relisted, Self::Gone]
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| DbError::decode(format!("unknown pass state {text}")))
    }
}

/// A stored pass, still sealed.
#[derive(Clone)]
pub struct Pass {
    pub ticket_id: Uuid,
    pub holder_id: Uuid,
    pub state: PassState,
    pub barcode_hash: Option<String>,
    barcode: Option<Vec<u8>>,
    file: Option<Vec<u8>>,
    pub file_info: Option<FileInfo>,
    /// The listing reselling it, while relisted.
    pub resold_as: Option<Uuid>,
}

impl std::fmt::Debug for Pass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pass")
            .field("ticket_id", &self.ticket_id)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Pass {
    pub fn summary(&self) -> PassSummary {
        PassSummary { barcode: self.barcode.is_some(), file: self.file_info.clone() }
    }

    /// The barcode's text, opened.
    pub fn barcode(&self, vault: &Vault) -> Result<Option<String>, Unreadable> {
        self.barcode
            .as_deref()
            .map(|sealed| {
                let bytes = vault.open(Sealed::Barcode, sealed)?;
                String::from_utf8(bytes).map_err(|_| Unreadable)
            })
            .transpose()
    }

    /// The file's bytes, opened, with its type.
    pub fn file(&self, vault: &Vault) -> Result<Option<(FileType, Vec<u8>)>, Unreadable> {
        let (Some(sealed), Some(info)) = (self.file.as_deref(), self.file_info.as_ref()) else {
            return Ok(None);
        };
        let kind = FileType::from_mime(&info.kind).ok_or(Unreadable)?;
        Ok(Some((kind, vault.open(Sealed::File, sealed)?)))
    }
}

/// The columns of a [`Pass`].
pub const PASS_COLUMNS: &str = "passes.ticket_id, passes.holder_id, passes.state, \
    passes.barcode_hash, passes.barcode, passes.file, passes.file_type, passes.file_name, \
    passes.file_size, passes.resold_as";

/// A [`Pass`] from a row holding [`PASS_COLUMNS`].
pub fn pass(row: &Row) -> Result<Pass, DbError> {
    let file_type: Option<String> = row.try_get("file_type")?;
    let resold_as: Option<String> = row.try_get("resold_as")?;
    Ok(Pass {
        ticket_id: parse_uuid(&row.try_get::<String, _>("ticket_id")?)?,
        holder_id: parse_uuid(&row.try_get::<String, _>("holder_id")?)?,
        state: PassState::parse(&row.try_get::<String, _>("state")?)?,
        barcode_hash: row.try_get("barcode_hash")?,
        barcode: row.try_get("barcode")?,
        file: row.try_get("file")?,
        file_info: match file_type {
            Some(kind) => Some(FileInfo {
                kind,
                size: row.try_get::<Option<i64>, _>("file_size")?.unwrap_or_default(),
                name: row.try_get::<Option<String>, _>("file_name")?.unwrap_or_default(),
            }),
            None => None,
        },
        resold_as: resold_as.as_deref().map(parse_uuid).transpose()?,
    })
}

common::store_error! {
    /// Why a pass could not be put on a listing.
    pub enum ListError {
        #[error("the barcode is on another live listing or holding")]
        Duplicate,
    }
}

/// Seals `new` and puts it on the listing `ticket_id` of `seller` (state
/// `listed`). A barcode on another live listing or holding — compared by
/// its keyed hash: the unique index under the current key, a look-up
/// under previous ones — is [`ListError::Duplicate`], and the caller's transaction must
/// be dropped (on PostgreSQL, it is aborted).
pub async fn list(
    tx: &mut Tx,
    vault: &Vault,
    ticket_id: Uuid,
    seller: Uuid,
    new: &NewPass,
) -> Result<(), ListError> {
    let hash = match &new.barcode {
        Some(barcode) => {
            if barcode_is_live(tx, vault, barcode).await? {
                return Err(ListError::Duplicate);
            }
            Some(vault.barcode_hash(barcode.as_str()))
        }
        None => None,
    };
    let seal = |what, bytes: &[u8]| vault.seal(what, bytes).map_err(DbError::decode);
    let barcode = new.barcode.as_ref().map(|b| seal(Sealed::Barcode, b.as_str().as_bytes()));
    let file = new.file.as_ref().map(|f| seal(Sealed::File, &f.bytes));
    let inserted = query(
        "INSERT INTO passes (ticket_id, holder_id, state, barcode_hash, barcode, file, \
         file_type, file_name, file_size, updated_at) \
         VALUES ($1, $2, 'listed', $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(ticket_id.to_string())
    .bind(seller.to_string())
    .bind(hash)
    .bind(barcode.transpose()?)
    .bind(file.transpose()?)
    .bind(new.file.as_ref().map(|f| f.kind.mime()))
    .bind(new.file.as_ref().map(|f| f.name.clone()))
    .bind(new.file.as_ref().map(|f| f.bytes.len() as i64))
    .bind(now_millis())
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(error) if error.is_unique_violation() => Err(ListError::Duplicate),
        other => other.map(|_| ()).map_err(ListError::from),
    }
}

/// Whether the barcode is on a live listing or holding under a previous
/// key (rows a rotation has not re-encrypted yet). Under the current key
/// the unique index alone decides, also between concurrent listings.
async fn barcode_is_live(tx: &mut Tx, vault: &Vault, barcode: &Barcode) -> Result<bool, DbError> {
    for hash in vault.previous_barcode_hashes(barcode.as_str()) {
        let found: Option<String> = query_scalar(
            "SELECT ticket_id FROM passes WHERE barcode_hash = $1 \
             AND state IN ('listed', 'held') LIMIT 1",
        )
        .bind(hash)
        .fetch_optional(&mut *tx)
        .await?;
        if found.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The sale of the listing `ticket_id` to `buyer`: the pass it resold (if
/// any: relisted, or held again after a withdrawal the sale overtook) goes
/// to nobody, and its own pass to the buyer — also when its seller
/// withdrew it meanwhile (a paid order stands, DECISIONS.md
/// "Withdrawals"), unless its barcode went on another live listing since
/// (then it stays with nobody, logged, and the checker reports it). `None`
/// as the buyer (an order whose `order.created` was handled before buyers
/// were kept) hands it to nobody.
pub async fn hand_over(tx: &mut Tx, ticket_id: Uuid, buyer: Option<Uuid>) -> Result<(), DbError> {
    query(
        "UPDATE passes SET state = 'gone', resold_as = NULL, updated_at = $2 \
         WHERE ticket_id = (SELECT resale_of FROM passes WHERE ticket_id = $1) \
         AND state IN ('relisted', 'held') AND (resold_as IS NULL OR resold_as = $1)",
    )
    .bind(ticket_id.to_string())
    .bind(now_millis())
    .execute(&mut *tx)
    .await?;
    let Some(buyer) = buyer else {
        query("UPDATE passes SET state = 'gone', updated_at = $2 WHERE ticket_id = $1")
            .bind(ticket_id.to_string())
            .bind(now_millis())
            .execute(&mut *tx)
            .await?;
        return Ok(());
    };
    let handed = query(
        "UPDATE passes SET state = 'held', holder_id = $2, updated_at = $3 \
         WHERE ticket_id = $1 AND state IN ('listed', 'gone') AND NOT EXISTS ( \
         SELECT 1 FROM passes AS other WHERE other.barcode_hash = passes.barcode_hash \
         AND other.state IN ('listed', 'held') AND other.ticket_id <> passes.ticket_id)",
    )
    .bind(ticket_id.to_string())
    .bind(buyer.to_string())
    .bind(now_millis())
    .execute(&mut *tx)
    .await?;
    if handed.rows_affected() == 0 && find(tx, ticket_id).await?.is_some() {
        tracing::error!(
            ticket.id = %ticket_id,
            "a sold ticket's barcode is on another live listing: its buyer does not get it"
        );
    }
    Ok(())
}

/// The listing `ticket_id` left sale unsold (withdrawn, or its event
/// started): its pass goes to nobody, and the pass it resold (if any) back
/// to its holder.
pub async fn left_sale(tx: &mut Tx, ticket_id: Uuid) -> Result<(), DbError> {
    query("UPDATE passes SET state = 'gone', updated_at = $2 WHERE ticket_id = $1 AND state = 'listed'")
        .bind(ticket_id.to_string())
        .bind(now_millis())
        .execute(&mut *tx)
        .await?;
    query(
        "UPDATE passes SET state = 'held', resold_as = NULL, updated_at = $2 \
         WHERE resold_as = $1 AND state = 'relisted'",
    )
    .bind(ticket_id.to_string())
    .bind(now_millis())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The pass of `ticket_id` if `user` may read it: its seller while listed,
/// its buyer once held (also while they resell it).
pub async fn readable<'e>(
    executor: impl Executor<'e>,
    ticket_id: Uuid,
    user: Uuid,
) -> Result<Option<Pass>, DbError> {
    let sql = format!(
        "SELECT {PASS_COLUMNS} FROM passes WHERE ticket_id = $1 AND holder_id = $2 \
         AND state IN ('listed', 'held', 'relisted')"
    );
    let row = query(sql)
        .bind(ticket_id.to_string())
        .bind(user.to_string())
        .fetch_optional(executor)
        .await?;
    row.as_ref().map(pass).transpose()
}

/// The pass of `ticket_id`, whoever holds it, in `tx`.
pub async fn find(tx: &mut Tx, ticket_id: Uuid) -> Result<Option<Pass>, DbError> {
    let sql = format!("SELECT {PASS_COLUMNS} FROM passes WHERE ticket_id = $1");
    let row = query(sql).bind(ticket_id.to_string()).fetch_optional(&mut *tx).await?;
    row.as_ref().map(pass).transpose()
}

/// Puts `resold` (a pass its holder holds) on the new listing `ticket_id`:
/// the same sealed content, the holder as its seller; `resold` becomes
/// `relisted` first, so the unique index lets the new listing in.
pub async fn relist(tx: &mut Tx, resold: &Pass, ticket_id: Uuid) -> Result<(), DbError> {
    query(
        "UPDATE passes SET state = 'relisted', resold_as = $2, updated_at = $3 \
         WHERE ticket_id = $1",
    )
    .bind(resold.ticket_id.to_string())
    .bind(ticket_id.to_string())
    .bind(now_millis())
    .execute(&mut *tx)
    .await?;
    query(
        "INSERT INTO passes (ticket_id, holder_id, state, barcode_hash, barcode, file, \
         file_type, file_name, file_size, resale_of, updated_at) \
         SELECT $1, holder_id, 'listed', barcode_hash, barcode, file, file_type, file_name, \
         file_size, ticket_id, $3 FROM passes WHERE ticket_id = $2",
    )
    .bind(ticket_id.to_string())
    .bind(resold.ticket_id.to_string())
    .bind(now_millis())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// What [`reseal`] did to one batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resealed {
    /// Passes read.
    pub read: usize,
    /// Passes rewritten under the current key.
    pub rewritten: usize,
    /// The last pass read: where the next batch starts (`None`: done).
    pub last: Option<Uuid>,
}

/// After a key rotation: re-seals, under the vault's current key, the
/// passes after `after` (up to `limit`) that a previous key sealed, and
/// gives them their barcode's hash under the current key. Run until
/// `last` is `None`; then the previous keys can be dropped.
pub async fn reseal(
    db: &Db,
    vault: &Vault,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Resealed, DbError> {
    let mut tx = db.begin().await?;
    let sql = format!(
        "SELECT {PASS_COLUMNS} FROM passes WHERE ticket_id > $1 ORDER BY ticket_id LIMIT $2"
    );
    let rows = query(sql)
        .bind(after.map(|a| a.to_string()).unwrap_or_default())
        .bind(limit)
        .fetch_all(&mut tx)
        .await?;
    let mut done = Resealed { read: rows.len(), ..Resealed::default() };
    for row in &rows {
        let pass = pass(row)?;
        done.last = Some(pass.ticket_id);
        let stale = |sealed: &Option<Vec<u8>>| sealed.as_deref().is_some_and(|s| vault.is_stale(s));
        if !stale(&pass.barcode) && !stale(&pass.file) {
            continue;
        }
        let unreadable = |_| DbError::decode(format!("pass {}: {Unreadable}", pass.ticket_id));
        let barcode = pass.barcode(vault).map_err(unreadable)?;
        let file = pass.file(vault).map_err(unreadable)?;
        let seal = |what, bytes: &[u8]| vault.seal(what, bytes).map_err(DbError::decode);
        query(
            "UPDATE passes SET barcode = $2, barcode_hash = $3, file = $4, updated_at = $5 \
             WHERE ticket_id = $1",
        )
        .bind(pass.ticket_id.to_string())
        .bind(barcode.as_ref().map(|b| seal(Sealed::Barcode, b.as_bytes())).transpose()?)
        .bind(barcode.as_ref().map(|b| vault.barcode_hash(b)))
        .bind(file.as_ref().map(|(_, bytes)| seal(Sealed::File, bytes)).transpose()?)
        .bind(now_millis())
        .execute(&mut tx)
        .await?;
        done.rewritten += 1;
    }
    tx.commit().await?;
    if done.read < usize::try_from(limit).unwrap_or(usize::MAX) {
        done.last = None;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_barcode_pattern_accepts_what_the_parser_accepts() {
        let pattern = regex::Regex::new(BARCODE_PATTERN).expect("regex");
        let long = "x".repeat(512);
        let too_long = "x".repeat(513);
        for text in [
            "",
            "   ",
            "abcd",
            " ab d ",
            "a\u{0}\u{1}b",
            "\u{3000}abcd\u{3000}",
            "abc",
            " abc ",
            &long,
            &too_long,
            "a  b",
            "a \n b",
        ] {
            let parsed = Barcode::parse(Some(text)).is_ok();
            assert_eq!(pattern.is_match(text), parsed, "{text:?}");
        }
    }

    #[test]
    fn file_types_come_from_the_bytes_and_names_are_made_safe() {
        assert_eq!(FileType::sniff(b"%PDF-1.7"), Some(FileType::Pdf));
        assert_eq!(FileType::sniff(b"\x89PNG\r\n\x1a\n"), Some(FileType::Png));
        assert_eq!(FileType::sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some(FileType::Jpeg));
        assert_eq!(FileType::sniff(b"<html>%PDF-"), None);
        let file = PassFile::new(Some("C:\\tickets\\my \"gig\";\n.pdf"), b"%PDF-".to_vec());
        assert_eq!(file.expect("a PDF").name, "my gig.pdf");
        let unnamed = PassFile::new(Some("../"), vec![0xFF, 0xD8, 0xFF]).expect("a JPEG");
        assert_eq!(unnamed.name, "ticket.jpg");
        assert!(!format!("{:?}", Barcode::parse(Some("SECRET-1")).expect("ok")).contains("SECRET"));
    }
}
