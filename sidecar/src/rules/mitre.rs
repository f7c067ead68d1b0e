//! The MITRE ATT&CK tactics and techniques Vigil's catalog uses (ids, names, reference URLs).
//! A rule naming an id that is not here is refused, so typos cannot reach an alert.

pub const FRAMEWORK: &str = "MITRE ATT&CK";

const TACTICS: &[(&str, &str)] = &[
    ("TA0001", "Initial Access"),
    ("TA0003", "Persistence"),
    ("TA0004", "Privilege Escalation"),
    ("TA0005", "Defense Evasion"),
    ("TA0006", "Credential Access"),
    ("TA0009", "Collection"),
    ("TA0010", "Exfiltration"),
    ("TA0011", "Command and Control"),
];

const TECHNIQUES: &[(&str, &str)] = &[
    ("T1078", "Valid Accounts"),
    ("T1078.001", "Default Accounts"),
    ("T1078.002", "Domain Accounts"),
    ("T1078.003", "Local Accounts"),
    ("T1078.004", "Cloud Accounts"),
    ("T1090", "Proxy"),
    ("T1090.003", "Multi-hop Proxy"),
    ("T1098", "Account Manipulation"),
    ("T1098.003", "Additional Cloud Roles"),
    ("T1098.005", "Device Registration"),
    ("T1110", "Brute Force"),
    ("T1110.001", "Password Guessing"),
    ("T1110.003", "Password Spraying"),
    ("T1110.004", "Credential Stuffing"),
    ("T1114", "Email Collection"),
    ("T1114.003", "Email Forwarding Rule"),
    ("T1133", "External Remote Services"),
    ("T1137", "Office Application Startup"),
    ("T1137.005", "Outlook Rules"),
    ("T1528", "Steal Application Access Token"),
    ("T1530", "Data from Cloud Storage"),
    ("T1539", "Steal Web Session Cookie"),
    ("T1550", "Use Alternate Authentication Material"),
    ("T1550.001", "Application Access Token"),
    ("T1550.004", "Web Session Cookie"),
    ("T1556", "Modify Authentication Process"),
    ("T1556.006", "Multi-Factor Authentication"),
    ("T1564", "Hide Artifacts"),
    ("T1564.008", "Email Hiding Rules"),
    ("T1621", "Multi-Factor Authentication Request Generation"),
];

pub fn tactic_name(id: &str) -> Option<&'static str> {
    TACTICS.iter().find(|(i, _)| *i == id).map(|(_, n)| *n)
}

pub fn technique_name(id: &str) -> Option<&'static str> {
    TECHNIQUES.iter().find(|(i, _)| *i == id).map(|(_, n)| *n)
}

pub fn tactic_reference(id: &str) -> String {
    format!("https://attack.mitre.org/tactics/{id}/")
}

/// `T1110.003` → `https://attack.mitre.org/techniques/T1110/003/`.
pub fn technique_reference(id: &str) -> String {
    format!(
        "https://attack.mitre.org/techniques/{}/",
        id.replace('.', "/")
    )
}

/// A rule's resolved ATT&CK reference.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreatRef {
    pub tactic: (String, String),
    /// The technique (parent id when a sub-technique is given).
    pub technique: Option<(String, String)>,
    pub subtechnique: Option<(String, String)>,
}

impl ThreatRef {
    pub fn resolve(tactic: &str, technique: Option<&str>) -> Result<ThreatRef, String> {
        let tactic_n =
            tactic_name(tactic).ok_or_else(|| format!("unknown ATT&CK tactic [{tactic}]"))?;
        let (technique, subtechnique) = match technique {
            None => (None, None),
            Some(t) => {
                let name =
                    technique_name(t).ok_or_else(|| format!("unknown ATT&CK technique [{t}]"))?;
                match t.split_once('.') {
                    Some((parent, _)) => {
                        let pname = technique_name(parent)
                            .ok_or_else(|| format!("unknown ATT&CK technique [{parent}]"))?;
                        (
                            Some((parent.to_string(), pname.to_string())),
                            Some((t.to_string(), name.to_string())),
                        )
                    }
                    None => (Some((t.to_string(), name.to_string())), None),
                }
            }
        };
        Ok(ThreatRef {
            tactic: (tactic.to_string(), tactic_n.to_string()),
            technique,
            subtechnique,
        })
    }

    /// Kibana's `threat[]` entry shape (also used for the rule NDJSON).
    pub fn kibana(&self) -> serde_json::Value {
        let mut technique = Vec::new();
        if let Some((id, name)) = &self.technique {
            let mut t =
                serde_json::json!({"id": id, "name": name, "reference": technique_reference(id)});
            if let Some((sid, sname)) = &self.subtechnique {
                t["subtechnique"] = serde_json::json!([{"id": sid, "name": sname, "reference": technique_reference(sid)}]);
            }
            technique.push(t);
        }
        serde_json::json!({
            "framework": FRAMEWORK,
            "tactic": {"id": self.tactic.0, "name": self.tactic.1, "reference": tactic_reference(&self.tactic.0)},
            "technique": technique,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_subtechniques_and_refuses_typos() {
        let t = ThreatRef::resolve("TA0006", Some("T1110.003")).unwrap();
        assert_eq!(t.technique.as_ref().unwrap().0, "T1110");
        assert_eq!(t.subtechnique.as_ref().unwrap().1, "Password Spraying");
        assert_eq!(
            technique_reference("T1110.003"),
            "https://attack.mitre.org/techniques/T1110/003/"
        );
        assert!(ThreatRef::resolve("TA0666", None).is_err());
        assert!(ThreatRef::resolve("TA0006", Some("T9999")).is_err());
    }
}
