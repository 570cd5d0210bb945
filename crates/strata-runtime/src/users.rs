//! `--user` / image `User`: `name`, `uid`, `uid:gid`, `name:group`, looked up in the image's
//! /etc/passwd and /etc/group (read through the rootfs, never following links out of it).

use crate::spec::User;

struct Passwd {
    name: String,
    uid: u32,
    gid: u32,
}

fn parse_passwd(text: &str) -> Vec<Passwd> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.len() >= 4).then(|| {
                Some(Passwd { name: fields[0].to_owned(), uid: fields[2].parse().ok()?, gid: fields[3].parse().ok()? })
            })?
        })
        .collect()
}

/// (name, gid, members)
fn parse_group(text: &str) -> Vec<(String, u32, Vec<String>)> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 3 {
                return None;
            }
            let members = fields
                .get(3)
                .map(|m| m.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect())
                .unwrap_or_default();
            Some((fields[0].to_owned(), fields[2].parse().ok()?, members))
        })
        .collect()
}

/// Resolves a user spec against the image's passwd and group files (their contents).
pub fn resolve_user(spec: &str, passwd: &str, group: &str) -> Result<User, String> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let users = parse_passwd(passwd);
    let groups = parse_group(group);
    let (uid, mut gid, name) = if user_part.is_empty() {
        (0, 0, Some("root".to_owned()))
    } else if let Ok(uid) = user_part.parse::<u32>() {
        match users.iter().find(|u| u.uid == uid) {
            Some(entry) => (uid, entry.gid, Some(entry.name.clone())),
            None => (uid, 0, None),
        }
    } else {
        let entry = users
            .iter()
            .find(|u| u.name == user_part)
            .ok_or_else(|| format!("unable to find user {user_part}: no matching entries in passwd file"))?;
        (entry.uid, entry.gid, Some(entry.name.clone()))
    };
    if let Some(group_part) = group_part {
        gid = match group_part.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .iter()
                .find(|(name, _, _)| name == group_part)
                .map(|(_, gid, _)| *gid)
                .ok_or_else(|| format!("unable to find group {group_part}: no matching entries in group file"))?,
        };
    }
    let mut additional_gids: Vec<u32> = match &name {
        Some(name) => groups.iter().filter(|(_, _, members)| members.contains(name)).map(|(_, gid, _)| *gid).collect(),
        None => Vec::new(),
    };
    if group_part.is_none() {
        additional_gids.retain(|g| *g != gid);
    }
    additional_gids.sort_unstable();
    additional_gids.dedup();
    Ok(User { uid, gid, additional_gids })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nalice:x:1000:\nwheel:x:10:alice\nstaff:x:50:bob,alice\n";

    #[test]
    fn user_forms() {
        assert_eq!(
            resolve_user("alice", PASSWD, GROUP).expect("name"),
            User { uid: 1000, gid: 1000, additional_gids: vec![10, 50] }
        );
        assert_eq!(resolve_user("1000:50", PASSWD, GROUP).expect("ids").gid, 50);
        assert_eq!(resolve_user("alice:wheel", PASSWD, GROUP).expect("name:group").gid, 10);
        assert_eq!(
            resolve_user("4242", PASSWD, GROUP).expect("unknown uid"),
            User { uid: 4242, gid: 0, additional_gids: vec![] }
        );
        assert!(resolve_user("bob", PASSWD, GROUP).is_err_and(|e| e.contains("unable to find user bob")));
        assert!(resolve_user("alice:nope", PASSWD, GROUP).is_err());
    }
}
