//! The lab's database: in-memory SQLite with CUCM data-dictionary table and column names,
//! so `executeSQLQuery` statements written for a publisher run unchanged.
//!
//! Conventions copied from CUCM: `pkid` is a lower-case UUID without braces (AXL shows
//! `{UPPER}`; notes §1), booleans are stored as `'t'`/`'f'` as Informix returns them
//! (notes §4), enum columns are `tk*` pointing at `type*` tables, references are `fk*`.
//! Lab simplifications: `enduser.digestcredentials` (CUCM keeps digest credentials in a
//! credential table) and `credential` holding password/PIN in clear text, NULL meaning the
//! lab default (`LabConfig::user_password`/`user_pin`), with the credential policy's state
//! (`hackcount`, times of the last failure, lockouts and change, epoch milliseconds) in
//! columns named by the lab (`ops::auth`).

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rusqlite::{params, Connection};
use std::collections::HashSet;

pub(crate) const SCHEMA: &str = r#"
PRAGMA foreign_keys = ON;

CREATE TABLE typeclass (enum INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE typedeviceprotocol (enum INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE typemodel (enum INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE typeproduct (enum INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE typepatternusage (enum INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE typeuserassociation (enum INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE typednusage (enum INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE typecredential (enum INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);

CREATE TABLE devicepool (pkid TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE sipprofile (pkid TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE securityprofile (
    pkid TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    tkdeviceprotocol INTEGER REFERENCES typedeviceprotocol(enum),
    enabledigestauthentication TEXT NOT NULL DEFAULT 'f'
);
CREATE TABLE callingsearchspace (pkid TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE routepartition (pkid TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE commonphoneconfig (pkid TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE location (pkid TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE);
-- Other configuration objects that AXL requests name by XFkType (phone templates,
-- presence groups, …), by the request element that names them (lab table, not CUCM's).
CREATE TABLE namedobject (
    pkid TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    UNIQUE (kind, name)
);

CREATE TABLE enduser (
    pkid TEXT PRIMARY KEY,
    userid TEXT NOT NULL UNIQUE,
    firstname TEXT,
    middlename TEXT,
    lastname TEXT,
    displayname TEXT,
    mailid TEXT,
    department TEXT,
    manager TEXT,
    telephonenumber TEXT,
    mobile TEXT,
    pager TEXT,
    homephone TEXT,
    title TEXT,
    directoryuri TEXT,
    status INTEGER NOT NULL DEFAULT 1,
    enablecti TEXT NOT NULL DEFAULT 't',
    digestcredentials TEXT
);

CREATE TABLE credential (
    pkid TEXT PRIMARY KEY,
    fkenduser TEXT NOT NULL REFERENCES enduser(pkid) ON DELETE CASCADE,
    tkcredential INTEGER NOT NULL REFERENCES typecredential(enum),
    credentials TEXT,
    hackcount INTEGER NOT NULL DEFAULT 0,
    timelastfailed INTEGER,
    timehackedlockout INTEGER,
    timeadminlockout INTEGER,
    timechanged INTEGER,
    UNIQUE (fkenduser, tkcredential)
);

CREATE TABLE device (
    pkid TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    description TEXT,
    tkmodel INTEGER NOT NULL REFERENCES typemodel(enum),
    tkproduct INTEGER NOT NULL REFERENCES typeproduct(enum),
    tkclass INTEGER NOT NULL REFERENCES typeclass(enum),
    tkdeviceprotocol INTEGER NOT NULL REFERENCES typedeviceprotocol(enum),
    fkdevicepool TEXT REFERENCES devicepool(pkid),
    fkcommonphoneconfig TEXT REFERENCES commonphoneconfig(pkid),
    fklocation TEXT REFERENCES location(pkid),
    fksipprofile TEXT REFERENCES sipprofile(pkid),
    fksecurityprofile TEXT REFERENCES securityprofile(pkid),
    fkcallingsearchspace TEXT REFERENCES callingsearchspace(pkid),
    fkenduser TEXT REFERENCES enduser(pkid) ON DELETE SET NULL
);
CREATE INDEX device_fkenduser ON device(fkenduser);

CREATE TABLE numplan (
    pkid TEXT PRIMARY KEY,
    dnorpattern TEXT NOT NULL,
    fkroutepartition TEXT REFERENCES routepartition(pkid),
    description TEXT,
    tkpatternusage INTEGER NOT NULL REFERENCES typepatternusage(enum),
    alertingname TEXT,
    fkcallingsearchspace_sharedlineappearance TEXT REFERENCES callingsearchspace(pkid)
);
-- One pattern per partition, the NULL partition counting as one value (CUCM's rule behind
-- axlcode 4052, notes §3); SQLite's UNIQUE would let NULLs repeat.
CREATE UNIQUE INDEX numplan_pattern_partition ON numplan(dnorpattern, ifnull(fkroutepartition, ''));

CREATE TABLE devicenumplanmap (
    pkid TEXT PRIMARY KEY,
    fkdevice TEXT NOT NULL REFERENCES device(pkid) ON DELETE CASCADE,
    fknumplan TEXT NOT NULL REFERENCES numplan(pkid) ON DELETE CASCADE,
    numplanindex INTEGER NOT NULL,
    display TEXT,
    label TEXT,
    UNIQUE (fkdevice, numplanindex)
);
CREATE INDEX devicenumplanmap_fknumplan ON devicenumplanmap(fknumplan);

CREATE TABLE enduserdevicemap (
    pkid TEXT PRIMARY KEY,
    fkenduser TEXT NOT NULL REFERENCES enduser(pkid) ON DELETE CASCADE,
    fkdevice TEXT NOT NULL REFERENCES device(pkid) ON DELETE CASCADE,
    tkuserassociation INTEGER NOT NULL REFERENCES typeuserassociation(enum),
    defaultprofile TEXT NOT NULL DEFAULT 'f',
    UNIQUE (fkenduser, fkdevice, tkuserassociation)
);
CREATE INDEX enduserdevicemap_fkdevice ON enduserdevicemap(fkdevice, tkuserassociation);

CREATE TABLE endusernumplanmap (
    pkid TEXT PRIMARY KEY,
    fkenduser TEXT NOT NULL REFERENCES enduser(pkid) ON DELETE CASCADE,
    fknumplan TEXT NOT NULL REFERENCES numplan(pkid) ON DELETE CASCADE,
    tkdnusage INTEGER NOT NULL REFERENCES typednusage(enum)
);
CREATE UNIQUE INDEX endusernumplanmap_primary ON endusernumplanmap(fkenduser) WHERE tkdnusage = 1;
CREATE INDEX endusernumplanmap_fknumplan ON endusernumplanmap(fknumplan);
"#;

// typeuserassociation: 3 = 'Digest In' from seed 001 (CUCM 8.6 data dictionary); 1, 5, 7
// from public code comments (notes §5, uncertain item 4).
const USER_ASSOCIATIONS: &[(i64, &str)] = &[
    (1, "Controlled Device"),
    (3, "Digest In"),
    (5, "Controlled Device Profile"),
    (7, "CTI Controlled Device Profile"),
];
pub(crate) const ASSOC_CONTROLLED: i64 = 1;
pub(crate) const ASSOC_DIGEST_IN: i64 = 3;
pub(crate) const DN_USAGE_PRIMARY: i64 = 1;
pub(crate) const CREDENTIAL_PASSWORD: i64 = 3;
pub(crate) const CREDENTIAL_PIN: i64 = 4;

// Enum numbers below are from memory of the CUCM data dictionary and NOT verified against
// it (the names are the XSD's XModel/XProduct/XClass/XDeviceProtocol/XPatternUsage values).
// typeproduct reuses the typemodel numbers: a lab simplification.
//
// The product catalogue (issue 11 item 6): current phone models, Jabber's device types
// (CSF = "Cisco Unified Client Services Framework", BOT = "Cisco Dual Mode for Android",
// TCT = "Cisco Dual Mode for iPhone", TAB = "Cisco Jabber for Tablet"), Webex desk
// devices and third-party SIP, named as in the XSD's XProduct/XModel enumerations. Which
// of them a release supports is not decided here: the request's XProduct enumeration
// (`facets`) refuses a product its schema does not list, e.g. "Cisco 8875" (15.0 only)
// on CUCM 14. The 9800 series ("Cisco 9861", "Cisco 9871") is in no fixture schema (it
// comes with device packs newer than the fixtures), so every emulated release refuses it,
// as a CUCM without that device pack does. Numbers marked "lab" are not CUCM's.
pub(crate) const MODELS: &[(i64, &str)] = &[
    (7, "Cisco 7960"),
    (8, "Cisco 7940"),
    (336, "Third-party SIP Device (Basic)"),
    (374, "Third-party SIP Device (Advanced)"),
    (503, "Cisco Unified Client Services Framework"),
    (562, "Cisco Dual Mode for iPhone"),
    (575, "Cisco Dual Mode for Android"),
    (621, "Cisco 7821"),
    (622, "Cisco 7841"),
    (623, "Cisco 7861"),
    (652, "Cisco Jabber for Tablet"),
    (683, "Cisco 8841"),
    (684, "Cisco 8851"),
    (685, "Cisco 8861"),
    (36213, "Cisco 8811"),
    (36670, "Cisco 8845"),
    (36677, "Cisco 8865"),
    // lab numbers from here on
    (90_001, "Cisco Webex Desk"),
    (90_002, "Cisco Webex Desk Pro"),
    (90_003, "Cisco Webex Desk LE"),
    (90_004, "Cisco Webex Desk Mini"),
    (90_005, "Cisco 8875"),
    (90_006, "Cisco 9861"),
    (90_007, "Cisco 9871"),
];
const CLASSES: &[(i64, &str)] = &[(1, "Phone"), (2, "Gateway")];
const PROTOCOLS: &[(i64, &str)] = &[(0, "SCCP"), (11, "SIP")];
const PATTERN_USAGES: &[(i64, &str)] = &[(2, "Device"), (3, "Translation")];
pub(crate) const USAGE_DEVICE: i64 = 2;

/// Seeded configuration objects (names as on a default CUCM install where they exist).
const DEVICE_POOLS: &[&str] = &["Default", "HQ", "Branch"];
const SIP_PROFILES: &[&str] = &["Standard SIP Profile"];
/// (name, protocol enum, digest authentication)
const SECURITY_PROFILES: &[(&str, i64, bool)] = &[
    (
        "Third-party SIP Device Advanced - Standard SIP Non-Secure Profile",
        11,
        false,
    ),
    // Secure profile with digest authentication, the one seed 001 needed.
    (
        "Third-party SIP Device Advanced - Standard SIP Secure Profile",
        11,
        true,
    ),
    ("Cisco 8845 - Standard SIP Non-Secure Profile", 11, false),
    ("Cisco 8865 - Standard SIP Non-Secure Profile", 11, false),
    ("Cisco 8811 - Standard SIP Non-Secure Profile", 11, false),
    ("Cisco 7841 - Standard SIP Non-Secure Profile", 11, false),
];
const PARTITIONS: &[&str] = &["Internal_PT"];
const CSSES: &[&str] = &["Internal_CSS"];
const COMMON_PHONE_CONFIGS: &[&str] = &["Standard Common Phone Profile"];
const LOCATIONS: &[&str] = &["Hub_None"];
/// Objects of [`namedobject`] by the element that names them: CUCM's default-install names
/// (the "Standard …" templates and groups), so requests written for a fresh CUCM resolve.
const NAMED_OBJECTS: &[(&str, &[&str])] = &[
    ("presenceGroup", &["Standard Presence group"]),
    (
        "phoneTemplate",
        &[
            "Standard 7821 SIP",
            "Standard 7841 SIP",
            "Standard 7861 SIP",
            "Standard 8811 SIP",
            "Standard 8841 SIP",
            "Standard 8845 SIP",
            "Standard 8851 SIP",
            "Standard 8861 SIP",
            "Standard 8865 SIP",
            "Third-party SIP Device (Advanced)",
        ],
    ),
    ("softkeyTemplate", &["Standard User", "Standard Feature"]),
    ("commonDeviceConfig", &["Default"]),
    ("mediaResourceList", &["Default_MRL"]),
    ("userProfile", &["Standard (Factory Default) User Profile"]),
    ("serviceProfile", &["Default"]),
    ("pwdCredPolicy", &["Default Credential Policy"]),
    ("pinCredPolicy", &["Default Credential Policy"]),
];

/// Create the schema, the configuration objects and `users` generated end users.
pub(crate) fn open(users: usize, seed: u64) -> rusqlite::Result<Connection> {
    let mut conn = Connection::open_in_memory()?;
    conn.execute_batch(SCHEMA)?;
    let tx = conn.transaction()?;
    for (table, rows) in [
        ("typemodel", MODELS),
        ("typeproduct", MODELS),
        ("typeclass", CLASSES),
        ("typedeviceprotocol", PROTOCOLS),
        ("typepatternusage", PATTERN_USAGES),
        ("typeuserassociation", USER_ASSOCIATIONS),
        ("typednusage", &[(1, "Primary Extension")]),
        ("typecredential", &[(3, "Password"), (4, "PIN")]),
    ] {
        let mut stmt = tx.prepare(&format!("INSERT INTO {table} (enum, name) VALUES (?1, ?2)"))?;
        for (e, n) in rows {
            stmt.execute(params![e, n])?;
        }
    }
    // Config objects get fixed pkids derived from the seed so runs are reproducible.
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_c0f1_9000_0000);
    for (table, names) in [
        ("devicepool", DEVICE_POOLS),
        ("sipprofile", SIP_PROFILES),
        ("routepartition", PARTITIONS),
        ("callingsearchspace", CSSES),
        ("commonphoneconfig", COMMON_PHONE_CONFIGS),
        ("location", LOCATIONS),
    ] {
        let mut stmt = tx.prepare(&format!("INSERT INTO {table} (pkid, name) VALUES (?1, ?2)"))?;
        for name in names {
            stmt.execute(params![random_pkid(&mut rng), name])?;
        }
    }
    {
        // Own generator: the pkids seeded before this table existed stay as they were.
        let mut named_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_0b1e_c700_0000);
        let mut stmt =
            tx.prepare("INSERT INTO namedobject (pkid, kind, name) VALUES (?1, ?2, ?3)")?;
        for (kind, names) in NAMED_OBJECTS {
            for name in *names {
                stmt.execute(params![random_pkid(&mut named_rng), kind, name])?;
            }
        }
    }
    {
        let mut stmt = tx.prepare(
            "INSERT INTO securityprofile (pkid, name, tkdeviceprotocol, enabledigestauthentication) \
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        for (name, proto, digest) in SECURITY_PROFILES {
            stmt.execute(params![
                random_pkid(&mut rng),
                name,
                proto,
                bool_tf(*digest)
            ])?;
        }
    }
    tx.commit()?;
    // Generated rows reference only rows created alongside them, so foreign-key checks
    // would only slow the bulk load; they are back on before the lab serves requests.
    conn.pragma_update(None, "foreign_keys", false)?;
    populate(&mut conn, users, seed)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    // After seeding: like CUCM's change cache after an AXL service start, the queue
    // begins empty, with a fresh queueId.
    conn.execute_batch(CHANGE_TRACKING)?;
    conn.execute(
        "INSERT INTO changequeueinfo (queueid) VALUES (?1)",
        params![uuid::Uuid::new_v4().simple().to_string()],
    )?;
    Ok(conn)
}

/// The change queue behind listChange (notes §6): triggers record every add/update/remove
/// of users, phones and lines; a user's device or extension associations count as an
/// update of the user. The cache holds the last 100,000 changes, as CUCM's does.
const CHANGE_TRACKING: &str = "
CREATE TABLE changequeueinfo (queueid TEXT NOT NULL);
CREATE TABLE changequeue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    type TEXT NOT NULL,
    pkid TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('a', 'u', 'r'))
);
-- What an update changed, for listChange's changedTags (notes §6): the AXL tag and its new
-- value; a NULL name marks a change the lab cannot name as a tag (a reference, an
-- association), for which the client must get the object (doGet).
CREATE TABLE changedtag (
    changeid INTEGER NOT NULL REFERENCES changequeue(id) ON DELETE CASCADE,
    name TEXT,
    value TEXT
);
CREATE INDEX changedtag_changeid ON changedtag(changeid);
CREATE TRIGGER changequeue_cap AFTER INSERT ON changequeue BEGIN
    DELETE FROM changequeue WHERE id <= NEW.id - 100000;
END;
CREATE TRIGGER enduser_a AFTER INSERT ON enduser BEGIN
    INSERT INTO changequeue (type, pkid, action) VALUES ('User', NEW.pkid, 'a');
END;
CREATE TRIGGER enduser_u AFTER UPDATE ON enduser BEGIN
    INSERT INTO changequeue (type, pkid, action) VALUES ('User', NEW.pkid, 'u');
    INSERT INTO changedtag (changeid, name, value)
    SELECT (SELECT max(id) FROM changequeue), t.name, t.value FROM (
        SELECT 'firstName' AS name, NEW.firstname AS value WHERE NEW.firstname IS NOT OLD.firstname
        UNION ALL SELECT 'displayName' AS name, NEW.displayname AS value WHERE NEW.displayname IS NOT OLD.displayname
        UNION ALL SELECT 'middleName' AS name, NEW.middlename AS value WHERE NEW.middlename IS NOT OLD.middlename
        UNION ALL SELECT 'lastName' AS name, NEW.lastname AS value WHERE NEW.lastname IS NOT OLD.lastname
        UNION ALL SELECT 'userid' AS name, NEW.userid AS value WHERE NEW.userid IS NOT OLD.userid
        UNION ALL SELECT 'mailid' AS name, NEW.mailid AS value WHERE NEW.mailid IS NOT OLD.mailid
        UNION ALL SELECT 'department' AS name, NEW.department AS value WHERE NEW.department IS NOT OLD.department
        UNION ALL SELECT 'manager' AS name, NEW.manager AS value WHERE NEW.manager IS NOT OLD.manager
        UNION ALL SELECT 'enableCti' AS name, NEW.enablecti AS value WHERE NEW.enablecti IS NOT OLD.enablecti
        UNION ALL SELECT 'status' AS name, NEW.status AS value WHERE NEW.status IS NOT OLD.status
        UNION ALL SELECT 'directoryUri' AS name, NEW.directoryuri AS value WHERE NEW.directoryuri IS NOT OLD.directoryuri
        UNION ALL SELECT 'telephoneNumber' AS name, NEW.telephonenumber AS value WHERE NEW.telephonenumber IS NOT OLD.telephonenumber
        UNION ALL SELECT 'title' AS name, NEW.title AS value WHERE NEW.title IS NOT OLD.title
        UNION ALL SELECT 'mobileNumber' AS name, NEW.mobile AS value WHERE NEW.mobile IS NOT OLD.mobile
        UNION ALL SELECT 'homeNumber' AS name, NEW.homephone AS value WHERE NEW.homephone IS NOT OLD.homephone
        UNION ALL SELECT 'pagerNumber' AS name, NEW.pager AS value WHERE NEW.pager IS NOT OLD.pager
        UNION ALL SELECT NULL, NULL WHERE NEW.digestcredentials IS NOT OLD.digestcredentials
    ) t;
END;
CREATE TRIGGER enduser_r AFTER DELETE ON enduser BEGIN
    INSERT INTO changequeue (type, pkid, action) VALUES ('User', OLD.pkid, 'r');
END;
CREATE TRIGGER enduserdevicemap_a AFTER INSERT ON enduserdevicemap BEGIN
    INSERT INTO changequeue (type, pkid, action)
    SELECT 'User', NEW.fkenduser, 'u' WHERE EXISTS (SELECT 1 FROM enduser WHERE pkid = NEW.fkenduser);
    INSERT INTO changedtag (changeid, name, value)
    SELECT max(id), NULL, NULL FROM changequeue
    WHERE EXISTS (SELECT 1 FROM enduser WHERE pkid = NEW.fkenduser) HAVING max(id) IS NOT NULL;
END;
CREATE TRIGGER enduserdevicemap_r AFTER DELETE ON enduserdevicemap BEGIN
    INSERT INTO changequeue (type, pkid, action)
    SELECT 'User', OLD.fkenduser, 'u' WHERE EXISTS (SELECT 1 FROM enduser WHERE pkid = OLD.fkenduser);
    INSERT INTO changedtag (changeid, name, value)
    SELECT max(id), NULL, NULL FROM changequeue
    WHERE EXISTS (SELECT 1 FROM enduser WHERE pkid = OLD.fkenduser) HAVING max(id) IS NOT NULL;
END;
CREATE TRIGGER endusernumplanmap_a AFTER INSERT ON endusernumplanmap BEGIN
    INSERT INTO changequeue (type, pkid, action) VALUES ('User', NEW.fkenduser, 'u');
    INSERT INTO changedtag (changeid, name, value)
    SELECT max(id), NULL, NULL FROM changequeue HAVING max(id) IS NOT NULL;
END;
CREATE TRIGGER endusernumplanmap_r AFTER DELETE ON endusernumplanmap BEGIN
    INSERT INTO changequeue (type, pkid, action)
    SELECT 'User', OLD.fkenduser, 'u' WHERE EXISTS (SELECT 1 FROM enduser WHERE pkid = OLD.fkenduser);
    INSERT INTO changedtag (changeid, name, value)
    SELECT max(id), NULL, NULL FROM changequeue
    WHERE EXISTS (SELECT 1 FROM enduser WHERE pkid = OLD.fkenduser) HAVING max(id) IS NOT NULL;
END;
CREATE TRIGGER device_a AFTER INSERT ON device BEGIN
    INSERT INTO changequeue (type, pkid, action) VALUES ('Phone', NEW.pkid, 'a');
END;
CREATE TRIGGER device_u AFTER UPDATE ON device BEGIN
    INSERT INTO changequeue (type, pkid, action) VALUES ('Phone', NEW.pkid, 'u');
    INSERT INTO changedtag (changeid, name, value)
    SELECT (SELECT max(id) FROM changequeue), t.name, t.value FROM (
        SELECT 'name' AS name, NEW.name AS value WHERE NEW.name IS NOT OLD.name
        UNION ALL SELECT 'description' AS name, NEW.description AS value WHERE NEW.description IS NOT OLD.description
        UNION ALL SELECT NULL, NULL WHERE NEW.tkmodel IS NOT OLD.tkmodel OR NEW.tkproduct IS NOT OLD.tkproduct OR NEW.tkclass IS NOT OLD.tkclass OR NEW.tkdeviceprotocol IS NOT OLD.tkdeviceprotocol OR NEW.fkdevicepool IS NOT OLD.fkdevicepool OR NEW.fkcommonphoneconfig IS NOT OLD.fkcommonphoneconfig OR NEW.fklocation IS NOT OLD.fklocation OR NEW.fksipprofile IS NOT OLD.fksipprofile OR NEW.fksecurityprofile IS NOT OLD.fksecurityprofile OR NEW.fkcallingsearchspace IS NOT OLD.fkcallingsearchspace OR NEW.fkenduser IS NOT OLD.fkenduser
    ) t;
END;
CREATE TRIGGER device_r AFTER DELETE ON device BEGIN
    INSERT INTO changequeue (type, pkid, action) VALUES ('Phone', OLD.pkid, 'r');
END;
CREATE TRIGGER numplan_a AFTER INSERT ON numplan BEGIN
    INSERT INTO changequeue (type, pkid, action) VALUES ('Line', NEW.pkid, 'a');
END;
CREATE TRIGGER numplan_u AFTER UPDATE ON numplan BEGIN
    INSERT INTO changequeue (type, pkid, action) VALUES ('Line', NEW.pkid, 'u');
    INSERT INTO changedtag (changeid, name, value)
    SELECT (SELECT max(id) FROM changequeue), t.name, t.value FROM (
        SELECT 'pattern' AS name, NEW.dnorpattern AS value WHERE NEW.dnorpattern IS NOT OLD.dnorpattern
        UNION ALL SELECT 'description' AS name, NEW.description AS value WHERE NEW.description IS NOT OLD.description
        UNION ALL SELECT 'alertingName' AS name, NEW.alertingname AS value WHERE NEW.alertingname IS NOT OLD.alertingname
        UNION ALL SELECT NULL, NULL WHERE NEW.fkroutepartition IS NOT OLD.fkroutepartition OR NEW.tkpatternusage IS NOT OLD.tkpatternusage OR NEW.fkcallingsearchspace_sharedlineappearance IS NOT OLD.fkcallingsearchspace_sharedlineappearance
    ) t;
END;
CREATE TRIGGER numplan_r AFTER DELETE ON numplan BEGIN
    INSERT INTO changequeue (type, pkid, action) VALUES ('Line', OLD.pkid, 'r');
END;
";

pub(crate) fn bool_tf(b: bool) -> &'static str {
    if b {
        "t"
    } else {
        "f"
    }
}

pub(crate) fn new_pkid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn random_pkid(rng: &mut ChaCha8Rng) -> String {
    uuid::Builder::from_random_bytes(rng.gen())
        .into_uuid()
        .to_string()
}

/// `{UPPER-CASE}` as AXL shows pkids (notes §1).
pub(crate) fn axl_uuid(pkid: &str) -> String {
    format!("{{{}}}", pkid.to_ascii_uppercase())
}

/// AXL accepts `{UPPER}`, bare, upper or lower case (notes §1); SQL stores lower, bare.
pub(crate) fn sql_pkid(axl: &str) -> String {
    axl.trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .to_ascii_lowercase()
}

const FIRST_NAMES: &[&str] = &[
    "James",
    "Mary",
    "John",
    "Patricia",
    "Robert",
    "Jennifer",
    "Michael",
    "Linda",
    "William",
    "Elizabeth",
    "David",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Daniel",
    "Nancy",
    "Matthew",
    "Lisa",
    "Anthony",
    "Betty",
    "Mark",
    "Margaret",
    "Paul",
    "Sandra",
    "Steven",
    "Ashley",
    "Andrew",
    "Emily",
    "Kenneth",
    "Donna",
    "Joshua",
    "Michelle",
    "Kevin",
    "Carol",
    "Brian",
    "Amanda",
    "George",
    "Melissa",
    "Priya",
    "Wei",
    "Hiroshi",
    "Fatima",
    "Lars",
    "Sofia",
    "Mateo",
    "Aisha",
    "Olga",
    "Raj",
    "Chen",
    "Ingrid",
    "Kwame",
    "Lucia",
    "Ahmed",
    "Yuki",
];
const LAST_NAMES: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Patel",
    "Kim",
    "Chen",
    "Tanaka",
    "Muller",
    "Rossi",
    "Larsen",
    "Novak",
    "Okafor",
    "Silva",
    "Ivanova",
    "Kowalski",
    "Haddad",
    "Singh",
    "OBrien",
];
const DEPARTMENTS: &[&str] = &[
    "Engineering",
    "Sales",
    "Marketing",
    "Finance",
    "Human Resources",
    "Support",
    "Operations",
    "Legal",
    "IT",
    "Facilities",
];
const TITLES: &[&str] = &[
    "Engineer",
    "Senior Engineer",
    "Account Manager",
    "Analyst",
    "Director",
    "Manager",
    "Specialist",
    "Coordinator",
    "Administrator",
    "Consultant",
];
/// (model, security profile)
const PHONE_MODELS: &[(&str, &str)] = &[
    ("Cisco 8845", "Cisco 8845 - Standard SIP Non-Secure Profile"),
    ("Cisco 8865", "Cisco 8865 - Standard SIP Non-Secure Profile"),
    ("Cisco 8811", "Cisco 8811 - Standard SIP Non-Secure Profile"),
    ("Cisco 7841", "Cisco 7841 - Standard SIP Non-Secure Profile"),
];

/// Generate `users` end users deterministically from `seed`: one transaction, prepared
/// statements, no per-row lookups (100k users in a few seconds in release builds).
fn populate(conn: &mut Connection, users: usize, seed: u64) -> rusqlite::Result<()> {
    if users == 0 {
        return Ok(());
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let tx = conn.transaction()?;
    let pkid_of = |table: &str, name: &str| -> rusqlite::Result<String> {
        tx.query_row(
            &format!("SELECT pkid FROM {table} WHERE name = ?1"),
            [name],
            |r| r.get(0),
        )
    };
    let partition = pkid_of("routepartition", "Internal_PT")?;
    let pools = [
        pkid_of("devicepool", "HQ")?,
        pkid_of("devicepool", "Branch")?,
    ];
    let sip_profile = pkid_of("sipprofile", "Standard SIP Profile")?;
    let css = pkid_of("callingsearchspace", "Internal_CSS")?;
    let cpc = pkid_of("commonphoneconfig", "Standard Common Phone Profile")?;
    let location = pkid_of("location", "Hub_None")?;
    let mut models = Vec::new();
    for (model, profile) in PHONE_MODELS {
        let tk: i64 = tx.query_row("SELECT enum FROM typemodel WHERE name = ?1", [model], |r| {
            r.get(0)
        })?;
        models.push((tk, pkid_of("securityprofile", profile)?));
    }
    {
        let mut ins_user = tx.prepare(
            "INSERT INTO enduser (pkid, userid, firstname, lastname, displayname, mailid, department, \
             manager, telephonenumber, title, directoryuri, status, enablecti) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 1, ?12)",
        )?;
        let mut ins_dn = tx.prepare(
            "INSERT INTO numplan (pkid, dnorpattern, fkroutepartition, description, tkpatternusage, alertingname) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut ins_primary = tx.prepare(
            "INSERT INTO endusernumplanmap (pkid, fkenduser, fknumplan, tkdnusage) VALUES (?1, ?2, ?3, 1)",
        )?;
        let mut ins_device = tx.prepare(
            "INSERT INTO device (pkid, name, description, tkmodel, tkproduct, tkclass, tkdeviceprotocol, \
             fkdevicepool, fkcommonphoneconfig, fklocation, fksipprofile, fksecurityprofile, \
             fkcallingsearchspace, fkenduser) VALUES (?1, ?2, ?3, ?4, ?4, 1, 11, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        let mut ins_line = tx.prepare(
            "INSERT INTO devicenumplanmap (pkid, fkdevice, fknumplan, numplanindex, display, label) \
             VALUES (?1, ?2, ?3, 1, ?4, ?5)",
        )?;
        let mut ins_assoc = tx.prepare(
            "INSERT INTO enduserdevicemap (pkid, fkenduser, fkdevice, tkuserassociation) VALUES (?1, ?2, ?3, 1)",
        )?;
        let mut userids: HashSet<String> = HashSet::with_capacity(users);
        let mut devices: HashSet<String> = HashSet::with_capacity(users);
        let mut managers: Vec<String> = Vec::new();
        for i in 0..users {
            let first = FIRST_NAMES.choose(&mut rng).copied().unwrap_or("Alex");
            let last = LAST_NAMES.choose(&mut rng).copied().unwrap_or("Doe");
            let base =
                format!("{}{}", first.chars().next().unwrap_or('x'), last).to_ascii_lowercase();
            let mut userid = format!("{base}{}", rng.gen_range(1..100));
            while !userids.insert(userid.clone()) {
                userid = format!("{base}{}", rng.gen_range(100..100_000));
            }
            let user_pkid = random_pkid(&mut rng);
            // Realistic gaps: some users lack mail, some an extension (and then a phone).
            let has_mail = rng.gen_bool(0.92);
            let has_extension = rng.gen_bool(0.9);
            let has_phone = has_extension && rng.gen_bool(0.94);
            let mail = has_mail.then(|| {
                format!(
                    "{}.{}@example.com",
                    first.to_ascii_lowercase(),
                    last.to_ascii_lowercase()
                )
            });
            let display = format!("{first} {last}");
            let department = DEPARTMENTS.choose(&mut rng).copied();
            let title = TITLES.choose(&mut rng).copied();
            let phone_number = format!("+1 408 555 {:04}", rng.gen_range(0..10_000));
            let manager = if managers.is_empty() || rng.gen_bool(0.3) {
                None
            } else {
                managers.choose(&mut rng).cloned()
            };
            if managers.len() < 200 && rng.gen_bool(0.1) {
                managers.push(userid.clone());
            }
            let uri = mail.clone();
            ins_user.execute(params![
                user_pkid,
                userid,
                first,
                last,
                display,
                mail,
                department,
                manager,
                phone_number,
                title,
                uri,
                bool_tf(rng.gen_bool(0.8)),
            ])?;
            if !has_extension {
                continue;
            }
            // Unique 5-digit DNs from 10000; above 90,000 users they grow to 6 digits.
            let dn = (10_000 + i).to_string();
            let dn_pkid = random_pkid(&mut rng);
            ins_dn.execute(params![
                dn_pkid,
                dn,
                partition,
                display,
                USAGE_DEVICE,
                display
            ])?;
            ins_primary.execute(params![random_pkid(&mut rng), user_pkid, dn_pkid])?;
            if !has_phone {
                continue;
            }
            let mut name = String::new();
            while name.is_empty() || !devices.insert(name.clone()) {
                name = format!("SEP{:012X}", rng.gen::<u64>() & 0xFFFF_FFFF_FFFF);
            }
            let device_pkid = random_pkid(&mut rng);
            let (tkmodel, profile) = models
                .choose(&mut rng)
                .cloned()
                .unwrap_or((36670, String::new()));
            let pool = pools.choose(&mut rng).cloned().unwrap_or_default();
            ins_device.execute(params![
                device_pkid,
                name,
                format!("{display} - {dn}"),
                tkmodel,
                pool,
                cpc,
                location,
                sip_profile,
                profile,
                css,
                user_pkid,
            ])?;
            ins_line.execute(params![
                random_pkid(&mut rng),
                device_pkid,
                dn_pkid,
                display,
                format!("{display} - {dn}"),
            ])?;
            ins_assoc.execute(params![random_pkid(&mut rng), user_pkid, device_pkid])?;
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_and_population() -> rusqlite::Result<()> {
        let conn = open(50, 7)?;
        let n: i64 = conn.query_row("SELECT count(*) FROM enduser", [], |r| r.get(0))?;
        assert_eq!(n, 50);
        let phones: i64 = conn.query_row(
            "SELECT count(*) FROM enduserdevicemap WHERE tkuserassociation = 1",
            [],
            |r| r.get(0),
        )?;
        assert!(phones > 30, "most users have a phone: {phones}");
        // NULL partition counts as one value for uniqueness.
        conn.execute(
            "INSERT INTO numplan (pkid, dnorpattern, tkpatternusage) VALUES ('a', '1', 2)",
            [],
        )?;
        assert!(conn
            .execute(
                "INSERT INTO numplan (pkid, dnorpattern, tkpatternusage) VALUES ('b', '1', 2)",
                [],
            )
            .is_err());
        Ok(())
    }

    #[test]
    fn same_seed_same_users() -> rusqlite::Result<()> {
        let ids = |seed| -> rusqlite::Result<Vec<String>> {
            let conn = open(20, seed)?;
            let mut stmt = conn.prepare("SELECT pkid || userid FROM enduser ORDER BY rowid")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect()
        };
        assert_eq!(ids(1)?, ids(1)?);
        assert_ne!(ids(1)?, ids(2)?);
        Ok(())
    }

    #[test]
    fn uuid_forms() {
        assert_eq!(axl_uuid("ab-cd"), "{AB-CD}");
        assert_eq!(sql_pkid("{AB-CD}"), "ab-cd");
        assert_eq!(sql_pkid("ab-cd"), "ab-cd");
    }
}
