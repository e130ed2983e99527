//! Roles and permissions: the one place that says who may do what. Later
//! capabilities add permissions here; routes declare the permission they
//! need, never a role.

/// What a user is, at the hospital.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Admin,
    SecurityAnalyst,
    Auditor,
    Clinician,
    Nurse,
    Registrar,
    DeviceService,
    /// Sees only their own record and its access log.
    Patient,
}

/// What a request may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// Manage users, roles, tokens and configuration.
    ManageIdentity,
    /// Read the security event stream and status.
    ReadEvents,
    /// Publish events (sensors, integrations).
    PublishEvents,
    /// Read ledger proofs; publish checkpoints.
    ReadLedger,
    PublishCheckpoints,
    /// Read patient records in the course of care.
    ReadRecords,
    WriteRecords,
    /// Read one's own record and who accessed it.
    ReadOwnRecord,
    /// Read alerts and detection rules.
    ReadAlerts,
    /// Triage alerts (acknowledge, assign, close, suppress) and manage
    /// detection rules.
    ManageDetection,
    /// Read the device inventory, SBOMs, advisories, findings and risk.
    ReadDevices,
    /// Change the inventory, attach SBOMs, import advisories, run scans.
    ManageDevices,
}

impl Permission {
    pub const ALL: [Permission; 12] = [
        Permission::ManageIdentity,
        Permission::ReadEvents,
        Permission::PublishEvents,
        Permission::ReadLedger,
        Permission::PublishCheckpoints,
        Permission::ReadRecords,
        Permission::WriteRecords,
        Permission::ReadOwnRecord,
        Permission::ReadAlerts,
        Permission::ManageDetection,
        Permission::ReadDevices,
        Permission::ManageDevices,
    ];

    /// The name API-key scopes use.
    pub fn name(self) -> &'static str {
        match self {
            Permission::ManageIdentity => "manage_identity",
            Permission::ReadEvents => "read_events",
            Permission::PublishEvents => "publish_events",
            Permission::ReadLedger => "read_ledger",
            Permission::PublishCheckpoints => "publish_checkpoints",
            Permission::ReadRecords => "read_records",
            Permission::WriteRecords => "write_records",
            Permission::ReadOwnRecord => "read_own_record",
            Permission::ReadAlerts => "read_alerts",
            Permission::ManageDetection => "manage_detection",
            Permission::ReadDevices => "read_devices",
            Permission::ManageDevices => "manage_devices",
        }
    }

    pub fn parse(name: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.name() == name)
    }

    fn bit(self) -> u64 {
        1 << (self as u32)
    }
}

/// A set of permissions, as bits: checking one is a single AND on the
/// request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Permissions(u64);

impl Permissions {
    pub fn of_roles(roles: &[Role]) -> Self {
        Self(roles.iter().flat_map(|r| r.permissions()).fold(0, |bits, p| bits | p.bit()))
    }

    /// Only the permissions also in `scopes` (an empty scope list limits nothing).
    pub fn limited_to(self, scopes: &[Permission]) -> Self {
        if scopes.is_empty() {
            return self;
        }
        Self(self.0 & scopes.iter().fold(0, |bits, p| bits | p.bit()))
    }

    pub fn contains(self, permission: Permission) -> bool {
        self.0 & permission.bit() != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL.into_iter().filter(move |p| self.contains(*p))
    }
}

impl Role {
    pub const ALL: [Role; 8] = [
        Role::Admin,
        Role::SecurityAnalyst,
        Role::Auditor,
        Role::Clinician,
        Role::Nurse,
        Role::Registrar,
        Role::DeviceService,
        Role::Patient,
    ];

    /// Privileged roles must enrol a second factor.
    pub fn requires_mfa(self) -> bool {
        matches!(self, Role::Admin | Role::SecurityAnalyst | Role::Auditor)
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::SecurityAnalyst => "security-analyst",
            Role::Auditor => "auditor",
            Role::Clinician => "clinician",
            Role::Nurse => "nurse",
            Role::Registrar => "registrar",
            Role::DeviceService => "device-service",
            Role::Patient => "patient",
        }
    }

    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }

    /// The permissions this role grants.
    pub fn permissions(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Role::Admin => &[
                ManageIdentity,
                ReadEvents,
                PublishEvents,
                ReadLedger,
                PublishCheckpoints,
                ReadAlerts,
                ManageDetection,
                ReadDevices,
                ManageDevices,
            ],
            Role::SecurityAnalyst => &[ReadEvents, ReadLedger, ReadAlerts, ManageDetection, ReadDevices, ManageDevices],
            Role::Auditor => &[ReadEvents, ReadLedger, ReadAlerts, ReadDevices],
            Role::Clinician | Role::Nurse => &[ReadRecords, WriteRecords],
            Role::Registrar => &[WriteRecords],
            Role::DeviceService => &[PublishEvents],
            Role::Patient => &[ReadOwnRecord],
        }
    }

    pub fn grants(self, permission: Permission) -> bool {
        self.permissions().contains(&permission)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_privileges_are_separate() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.name()), Some(role));
        }
        assert!(Role::Admin.grants(Permission::ManageIdentity));
        assert!(!Role::Clinician.grants(Permission::ManageIdentity));
        assert!(!Role::Admin.grants(Permission::ReadRecords), "admins administer; they do not read charts");
        assert_eq!(Role::ALL.iter().filter(|r| r.requires_mfa()).count(), 3);
        assert!(Role::Patient.permissions() == [Permission::ReadOwnRecord]);
    }

    #[test]
    fn permission_sets_and_scopes() {
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.name()), Some(p));
        }
        let admin = Permissions::of_roles(&[Role::Admin]);
        assert!(admin.contains(Permission::ManageIdentity) && !admin.contains(Permission::ReadRecords));
        let both = Permissions::of_roles(&[Role::Admin, Role::Clinician]);
        assert_eq!(both.iter().count(), 11);
        let scoped = admin.limited_to(&[Permission::ReadLedger, Permission::ReadRecords]);
        assert_eq!(scoped.iter().collect::<Vec<_>>(), [Permission::ReadLedger], "a scope never adds");
        assert_eq!(admin.limited_to(&[]), admin);
    }
}
