//! Unit tests for every rule of the policy (docs/POLICY.md) and the original tool's bugs,
//! on hand-built snapshots (no storage).

use std::collections::BTreeMap;
use std::sync::Arc;

use regex::Regex;

use super::*;
use crate::meta::{Child, ImageInfo, Manifest, Platform};
use crate::record::{Problem, ProblemKind, RepoRecord, Revision, TagLink};

const NOW: i64 = 1_800_000_000;
const OLD: i64 = NOW - 30 * 86_400;
const DAY: i64 = 86_400;

fn d(n: u8) -> Digest {
    Digest([n; 32])
}

fn policy(keep: usize) -> Policy {
    Policy::new(
        Regex::new(DEFAULT_HASH_TAG_PATTERN).expect("default pattern"),
        keep,
        3600,
        NOW,
    )
}

fn amd64() -> Option<Platform> {
    Some(Platform {
        os: "linux".into(),
        architecture: "amd64".into(),
    })
}

/// Builds one repository's snapshot.
struct B(Snapshot);

impl B {
    fn new(name: &str) -> B {
        B(Snapshot {
            record: RepoRecord {
                name: Arc::from(name),
                ..RepoRecord::default()
            },
            ..Snapshot::default()
        })
    }
    fn rev(&mut self, n: u8, at: i64) {
        self.0.record.revisions.push(Revision {
            digest: d(n),
            linked_at: at,
        });
    }
    fn put(mut self, n: u8, m: Manifest) -> B {
        self.rev(n, OLD);
        self.0.manifests.insert(d(n), Meta::Parsed(Box::new(m)));
        self
    }
    fn image_at(mut self, n: u8, created: Option<i64>) -> B {
        self.0.images.insert(
            d(n),
            ImageInfo {
                created,
                platform: amd64(),
            },
        );
        self.put(
            n,
            Manifest {
                kind: Kind::Image,
                children: vec![],
                subject: None,
                config: Some(d(200)),
                schema1: None,
                blobs: vec![],
                foreign_blobs: vec![],
                mentions: vec![],
                foreign_mentions: vec![],
                doubt: None,
                size: 0,
            },
        )
    }
    fn image(self, n: u8) -> B {
        self.image_at(n, Some(OLD - DAY))
    }
    fn index(self, n: u8, children: &[u8]) -> B {
        let children = children
            .iter()
            .map(|c| Child {
                digest: d(*c),
                platform: amd64(),
            })
            .collect();
        self.put(
            n,
            Manifest {
                kind: Kind::Index,
                children,
                subject: None,
                config: None,
                schema1: None,
                blobs: vec![],
                foreign_blobs: vec![],
                mentions: vec![],
                foreign_mentions: vec![],
                doubt: None,
                size: 0,
            },
        )
    }
    fn referrer(self, n: u8, subject: u8) -> B {
        self.put(
            n,
            Manifest {
                kind: Kind::Image,
                children: vec![],
                subject: Some(d(subject)),
                config: Some(d(201)),
                schema1: None,
                blobs: vec![],
                foreign_blobs: vec![],
                mentions: vec![],
                foreign_mentions: vec![],
                doubt: None,
                size: 0,
            },
        )
    }
    fn unknown(self, n: u8, mentions: &[u8]) -> B {
        let children = mentions
            .iter()
            .map(|c| Child {
                digest: d(*c),
                platform: None,
            })
            .collect();
        self.put(
            n,
            Manifest {
                kind: Kind::Unknown,
                children,
                subject: None,
                config: None,
                schema1: None,
                blobs: vec![],
                foreign_blobs: vec![],
                mentions: vec![],
                foreign_mentions: vec![],
                doubt: None,
                size: 0,
            },
        )
    }
    /// Makes `n` (already put) mention `others` anywhere in its JSON.
    fn mentions(mut self, n: u8, others: &[u8]) -> B {
        if let Some(Meta::Parsed(m)) = self.0.manifests.get_mut(&d(n)) {
            m.mentions.extend(others.iter().map(|o| d(*o)));
        }
        self
    }
    fn bad(mut self, n: u8) -> B {
        self.rev(n, OLD);
        self.0
            .manifests
            .insert(d(n), Meta::Bad(format!("manifest {} unreadable", d(n))));
        self
    }
    fn bad_config(mut self, n: u8) -> B {
        self.0.images.remove(&d(n));
        self.0.config_errors.insert(
            d(n),
            format!("config of {} at /x/data: not a JSON image config", d(n)),
        );
        self
    }
    fn young(mut self, n: u8) -> B {
        for r in &mut self.0.record.revisions {
            if r.digest == d(n) {
                r.linked_at = NOW - 60;
            }
        }
        self
    }
    fn tag_at(mut self, name: &str, n: u8, at: i64) -> B {
        self.0.record.tags.push(TagLink {
            name: name.into(),
            digest: d(n),
            linked_at: at,
        });
        self
    }
    fn tag(self, name: &str, n: u8) -> B {
        self.tag_at(name, n, OLD)
    }
    fn plan(&self, keep: usize) -> RepoPlan {
        plan_repository(&self.0, &policy(keep))
    }
}

fn verdicts(p: &RepoPlan) -> BTreeMap<u8, (Verdict, Reason)> {
    p.decisions
        .iter()
        .map(|x| (x.digest.0[0], (x.verdict, p.reason(x))))
        .collect()
}

fn keep(r: Reason) -> (Verdict, Reason) {
    (Verdict::Keep, r)
}

fn del(r: Reason) -> (Verdict, Reason) {
    (Verdict::Delete, r)
}

fn pos(p: &RepoPlan, n: u8) -> usize {
    p.delete_digests()
        .position(|x| x == d(n))
        .unwrap_or_else(|| panic!("{n} not in delete order"))
}

fn attachment_tag(subject: u8, suffix: &str) -> String {
    format!("sha256-{}{suffix}", d(subject).hex())
}

#[test]
fn untagged_is_deleted_and_tagged_kept() {
    let p = B::new("app").image(1).image(2).tag("latest", 1).plan(10);
    assert_eq!(
        verdicts(&p),
        BTreeMap::from([(1, keep(Reason::VersionTag)), (2, del(Reason::Untagged))])
    );
    assert_eq!(p.delete_digests().collect::<Vec<_>>(), vec![d(2)]);
    assert!(p.tags.iter().all(|t| t.kept));
}

#[test]
fn hash_tags_keep_the_newest_n_images_by_created_not_push_order() {
    // 12 images whose push order is the reverse of their creation order.
    let mut b = B::new("app");
    for i in 0..12u8 {
        b = b.image_at(10 + i, Some(OLD - i64::from(i) * DAY)).tag_at(
            &format!("abcdef{i:02}"),
            10 + i,
            OLD - 100 + i64::from(i),
        );
    }
    let p = b.plan(10);
    let v = verdicts(&p);
    for i in 0..10u8 {
        assert_eq!(
            v[&(10 + i)],
            keep(Reason::HashTagKept { rank: u32::from(i) })
        );
    }
    assert_eq!(v[&20], del(Reason::HashTagExpired { rank: 10 }));
    assert_eq!(v[&21], del(Reason::HashTagExpired { rank: 11 }));
    let expired: Vec<&str> = p
        .tags
        .iter()
        .filter(|t| !t.kept)
        .map(|t| &*t.name)
        .collect();
    assert_eq!(expired, vec!["abcdef10", "abcdef11"]);
}

#[test]
fn keep_n_counts_images_not_tags() {
    // Image 1 carries three hash tags; keep=2 must keep images 1 and 2, not just image 1.
    let p = B::new("app")
        .image_at(1, Some(OLD))
        .image_at(2, Some(OLD - DAY))
        .image_at(3, Some(OLD - 2 * DAY))
        .tag("aaaaaaa1", 1)
        .tag("aaaaaaa2", 1)
        .tag("aaaaaaa3", 1)
        .tag("bbbbbbb1", 2)
        .tag("ccccccc1", 3)
        .plan(2);
    let v = verdicts(&p);
    assert_eq!(v[&1], keep(Reason::HashTagKept { rank: 0 }));
    assert_eq!(v[&2], keep(Reason::HashTagKept { rank: 1 }));
    assert_eq!(v[&3], del(Reason::HashTagExpired { rank: 2 }));
}

#[test]
fn expired_hash_tag_with_a_version_tag_stays() {
    let p = B::new("app")
        .image_at(1, Some(OLD))
        .image_at(2, Some(OLD - DAY))
        .tag("1111111", 1)
        .tag("2222222", 2)
        .tag("v1.0", 2)
        .plan(1);
    let v = verdicts(&p);
    assert_eq!(v[&2], keep(Reason::VersionTag));
    assert_eq!(p.delete_count(), 0);
    assert!(
        p.tags.iter().all(|t| t.kept),
        "a kept digest keeps all its tags"
    );
}

#[test]
fn missing_dates_and_ties_fall_back_to_push_time() {
    let p = B::new("app")
        .image_at(1, None)
        .image_at(2, None)
        .image_at(3, Some(OLD - 10 * DAY))
        .image_at(4, Some(OLD - 10 * DAY))
        .tag_at("1111111", 1, OLD - 3 * DAY) // no date: its push time stands in
        .tag_at("2222222", 2, OLD - 20 * DAY)
        .tag_at("3333333", 3, OLD - 1)
        .tag_at("4444444", 4, OLD - 2)
        .plan(2);
    let v = verdicts(&p);
    assert_eq!(v[&1], keep(Reason::HashTagKept { rank: 0 }));
    assert_eq!(
        v[&3],
        keep(Reason::HashTagKept { rank: 1 }),
        "tie broken by the newer push"
    );
    assert_eq!(v[&4], del(Reason::HashTagExpired { rank: 2 }));
    assert_eq!(v[&2], del(Reason::HashTagExpired { rank: 3 }));
}

#[test]
fn keep_zero_expires_every_hash_tag() {
    let p = B::new("app").image(1).tag("abcdef0", 1).plan(0);
    assert_eq!(verdicts(&p)[&1], del(Reason::HashTagExpired { rank: 0 }));
}

#[test]
fn index_date_comes_from_its_amd64_child() {
    let mut b = B::new("app")
        .image_at(1, Some(OLD - 5 * DAY))
        .image_at(2, Some(OLD - DAY));
    // Index 3 lists an arm64 child first and the amd64 child second.
    b = b.put(
        3,
        Manifest {
            kind: Kind::Index,
            children: vec![
                Child {
                    digest: d(1),
                    platform: Some(Platform {
                        os: "linux".into(),
                        architecture: "arm64".into(),
                    }),
                },
                Child {
                    digest: d(2),
                    platform: amd64(),
                },
            ],
            subject: None,
            config: None,
            schema1: None,
            blobs: vec![],
            foreign_blobs: vec![],
            mentions: vec![],
            foreign_mentions: vec![],
            doubt: None,
            size: 0,
        },
    );
    assert_eq!(b.0.created_of(&d(3)), Some(OLD - DAY));
    let p = b
        .index(4, &[1])
        .image_at(5, Some(OLD - 3 * DAY))
        .tag("aaaaaaa", 3)
        .tag("bbbbbbb", 4)
        .tag("ccccccc", 5)
        .plan(2);
    let v = verdicts(&p);
    assert_eq!(v[&3], keep(Reason::HashTagKept { rank: 0 }));
    assert_eq!(v[&5], keep(Reason::HashTagKept { rank: 1 }));
    assert_eq!(
        v[&4],
        del(Reason::HashTagExpired { rank: 2 }),
        "first child's date stands in without amd64"
    );
}

#[test]
fn index_keeps_children_and_nested_grandchildren() {
    let p = B::new("app")
        .image(1)
        .image(2)
        .image(3)
        .index(10, &[1, 2])
        .index(20, &[10, 3])
        .tag("multi", 20)
        .plan(10);
    assert_eq!(
        verdicts(&p),
        BTreeMap::from([
            (1, keep(Reason::ChildOf { parent: d(10) })),
            (2, keep(Reason::ChildOf { parent: d(10) })),
            (3, keep(Reason::ChildOf { parent: d(20) })),
            (10, keep(Reason::ChildOf { parent: d(20) })),
            (20, keep(Reason::VersionTag)),
        ])
    );
}

#[test]
fn children_of_a_deleted_index_go_unless_something_else_keeps_them() {
    let p = B::new("app")
        .image(1)
        .image(2)
        .image(3)
        .index(10, &[1, 2])
        .index(11, &[2, 3])
        .tag("current", 11)
        .plan(10);
    let v = verdicts(&p);
    assert_eq!(v[&10], del(Reason::Untagged));
    assert_eq!(v[&1], del(Reason::ChildOfDeleted { parent: d(10) }));
    assert_eq!(v[&2], keep(Reason::ChildOf { parent: d(11) }));
    assert!(pos(&p, 10) < pos(&p, 1), "parents before children");
}

#[test]
fn expired_hash_index_takes_its_children_parent_first() {
    let p = B::new("app")
        .image_at(1, Some(OLD - 9 * DAY))
        .image_at(2, Some(OLD - 9 * DAY))
        .index(10, &[1, 2])
        .image_at(3, Some(OLD))
        .tag("aaaaaaa", 10)
        .tag("bbbbbbb", 3)
        .plan(1);
    let v = verdicts(&p);
    assert_eq!(v[&10], del(Reason::HashTagExpired { rank: 1 }));
    assert_eq!(v[&1], del(Reason::ChildOfDeleted { parent: d(10) }));
    assert!(pos(&p, 10) < pos(&p, 1) && pos(&p, 10) < pos(&p, 2));
}

#[test]
fn nested_index_deletion_orders_every_level() {
    let p = B::new("app")
        .image(1)
        .index(10, &[1])
        .index(20, &[10])
        .plan(10);
    assert_eq!(
        p.delete_digests().collect::<Vec<_>>(),
        vec![d(20), d(10), d(1)]
    );
    assert_eq!(
        p.deletes().map(|(_, l)| l).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
}

#[test]
fn attachments_live_and_die_with_their_subject() {
    let p = B::new("app")
        .image(1)
        .image(2)
        .image(11)
        .image(12)
        .image(13)
        .image(14)
        .tag("v1", 1)
        .tag(&attachment_tag(1, ".sig"), 11)
        .tag(&attachment_tag(1, ""), 14)
        .tag(&attachment_tag(2, ".att"), 12)
        .tag(&attachment_tag(99, ".sbom"), 13)
        .plan(10);
    let v = verdicts(&p);
    assert_eq!(v[&11], keep(Reason::AttachmentOf { subject: d(1) }));
    assert_eq!(v[&14], keep(Reason::AttachmentOf { subject: d(1) }));
    assert_eq!(v[&2], del(Reason::Untagged));
    assert_eq!(v[&12], del(Reason::AttachmentOfDeleted { subject: d(2) }));
    // The subject is no revision here (signatures kept in their own repository): live.
    assert_eq!(v[&13], keep(Reason::ForeignAttachment { subject: d(99) }));
    assert!(pos(&p, 12) < pos(&p, 2), "attachment before its subject");
}

#[test]
fn signatures_kept_apart_are_live_with_what_they_reach() {
    // A COSIGN_REPOSITORY-style repository: only attachment tags, subjects elsewhere; one
    // is an OCI referrers-tag index listing two referrers.
    let p = B::new("signatures")
        .image(11)
        .image(21)
        .image(22)
        .index(20, &[21, 22])
        .image(30)
        .tag(&attachment_tag(1, ".sig"), 11)
        .tag(&attachment_tag(2, ""), 20)
        .plan(10);
    let v = verdicts(&p);
    assert_eq!(v[&11], keep(Reason::ForeignAttachment { subject: d(1) }));
    assert_eq!(v[&20], keep(Reason::ForeignAttachment { subject: d(2) }));
    assert_eq!(v[&21], keep(Reason::ChildOf { parent: d(20) }));
    assert_eq!(v[&22], keep(Reason::ChildOf { parent: d(20) }));
    assert_eq!(v[&30], del(Reason::Untagged));
    assert_eq!(p.delete_count(), 1);
}

#[test]
fn attachment_tags_are_never_hash_tags() {
    let pol = Policy {
        hash_tag: Regex::new("^sha256-.*$").expect("regex"),
        ..policy(0)
    };
    assert_eq!(
        classify_tag(&attachment_tag(1, ".sig"), &pol),
        TagClass::Attachment { subject: d(1) }
    );
    assert_eq!(
        classify_tag(&attachment_tag(1, ".other"), &pol),
        TagClass::Hash
    );
    assert_eq!(classify_tag("latest", &policy(0)), TagClass::Version);
    assert_eq!(classify_tag("3f33a785", &policy(0)), TagClass::Hash);
    assert_eq!(classify_tag("3F33A785", &policy(0)), TagClass::Version);
}

#[test]
fn referrers_of_kept_subjects_stay_transitively() {
    let p = B::new("app")
        .image(1)
        .referrer(2, 1) // SBOM of 1
        .referrer(3, 2) // signature of the SBOM
        .image(4)
        .referrer(5, 4)
        .referrer(6, 77) // subject absent
        .tag("v1", 1)
        .plan(10);
    let v = verdicts(&p);
    assert_eq!(v[&2], keep(Reason::ReferrerOf { subject: d(1) }));
    assert_eq!(v[&3], keep(Reason::ReferrerOf { subject: d(2) }));
    assert_eq!(v[&5], del(Reason::ReferrerOfDeleted { subject: d(4) }));
    assert_eq!(v[&6], del(Reason::ReferrerOfDeleted { subject: d(77) }));
    assert!(pos(&p, 5) < pos(&p, 4), "referrer before its subject");
}

#[test]
fn grace_period_protects_young_revisions_and_their_children() {
    let p = B::new("app")
        .image(1)
        .image(2)
        .index(10, &[1])
        .young(10)
        .image(3)
        .young(3)
        .plan(10);
    let v = verdicts(&p);
    assert_eq!(v[&10], keep(Reason::GracePeriod));
    assert_eq!(v[&1], keep(Reason::ChildOf { parent: d(10) }));
    assert_eq!(v[&3], keep(Reason::GracePeriod));
    assert_eq!(v[&2], del(Reason::Untagged));
}

#[test]
fn unreadable_manifest_fails_the_repository_closed() {
    let p = B::new("app").image(1).image(2).bad(3).tag("v1", 1).plan(10);
    assert_eq!(p.delete_count(), 0);
    assert!(p.decisions.iter().all(|x| x.verdict == Verdict::Keep));
    assert_eq!(verdicts(&p)[&2], keep(Reason::FailClosed));
    assert_eq!(verdicts(&p)[&1], keep(Reason::FailClosed));
    assert_eq!(p.problems.len(), 1);
    assert!(p.problems[0].contains(&d(3).to_string()));
}

#[test]
fn unreadable_tag_target_without_revision_fails_closed() {
    let mut b = B::new("app").image(1);
    b.0.manifests.insert(d(9), Meta::Bad("gone".into()));
    let p = b.tag("v1", 9).plan(10);
    assert_eq!(p.delete_count(), 0);
    assert_eq!(p.notes.len(), 1, "the dangling tag is noted");
}

#[test]
fn lister_problems_fail_the_repository_closed() {
    let mut b = B::new("app").image(1);
    b.0.record
        .problems
        .push(Problem::new(ProblemKind::MalformedLink, "bad link"));
    let p = b.plan(10);
    assert_eq!(verdicts(&p)[&1], keep(Reason::FailClosed));
    assert_eq!(p.problems, vec!["bad link".to_owned()]);
}

#[test]
fn unknown_media_type_is_kept_with_what_it_mentions() {
    let p = B::new("app").image(1).image(2).unknown(5, &[1]).plan(10);
    let v = verdicts(&p);
    assert_eq!(v[&5], keep(Reason::FailClosed));
    assert_eq!(v[&1], keep(Reason::ChildOf { parent: d(5) }));
    assert_eq!(v[&2], del(Reason::Untagged));
    assert_eq!(p.notes.len(), 1);
}

#[test]
fn what_a_kept_manifest_mentions_anywhere_is_kept_transitively() {
    // 1 is tagged and names 2 in an annotation (or under a key only Go reads); 2 names 3.
    let p = B::new("app")
        .image(1)
        .image(2)
        .image(3)
        .image(4)
        .mentions(1, &[2, 99])
        .mentions(2, &[3])
        .mentions(4, &[1])
        .tag("v1", 1)
        .plan(10);
    let v = verdicts(&p);
    assert_eq!(v[&1], keep(Reason::VersionTag));
    assert_eq!(v[&2], keep(Reason::MentionedBy { parent: d(1) }));
    assert_eq!(v[&3], keep(Reason::MentionedBy { parent: d(2) }));
    // Mentioning a kept manifest keeps nothing: 4 is untagged and goes, before 1 would.
    assert_eq!(v[&4], del(Reason::Untagged));
    assert_eq!(
        p.reason(p.decision(&d(2)).expect("2")).to_string(),
        format!("mentioned-by {}", d(1))
    );
}

#[test]
fn a_digest_untagged_in_one_repository_is_deleted_there_only() {
    let a = B::new("a").image(1).tag("latest", 1).plan(10);
    let b = B::new("b").image(1).plan(10);
    assert_eq!(verdicts(&a)[&1], keep(Reason::VersionTag));
    assert_eq!(verdicts(&b)[&1], del(Reason::Untagged));
}

#[test]
fn labels_describe_images_and_indexes() {
    let p = B::new("app")
        .image(1)
        .image(2)
        .index(10, &[1, 2])
        .tag("x", 10)
        .plan(10);
    let idx = p.decision(&d(10)).expect("index decision");
    assert_eq!(p.label(idx), "index [linux/amd64, linux/amd64]");
    assert_eq!(idx.kind, Some(Kind::Index));
    assert_eq!(idx.created(), Some(OLD - DAY));
    assert_eq!(p.label(p.decision(&d(1)).expect("image")), "linux/amd64");
}

#[test]
fn plans_stay_compact() {
    // Plans of a whole registry are held until the report: one decision per manifest.
    assert!(std::mem::size_of::<Decision>() <= 56);
    assert!(std::mem::size_of::<PlannedTag>() <= 64);
}

#[test]
fn keep_tags_protect_what_they_reach_even_hash_tags() {
    let pol = Policy {
        keep_tags: Some(Regex::new("^release-").expect("regex")),
        ..policy(0)
    };
    let p = plan_repository(
        &B::new("app")
            .image(1)
            .image(2)
            .image(3)
            .index(4, &[3])
            .tag("abcdef1", 1)
            .tag("abcdef2", 2)
            .tag("release-2", 2)
            .tag("release-4", 4)
            .0,
        &pol,
    );
    let v = verdicts(&p);
    assert_eq!(v[&1], del(Reason::HashTagExpired { rank: 0 }));
    assert_eq!(v[&2], keep(Reason::KeepTag));
    assert_eq!(v[&4], keep(Reason::KeepTag));
    assert_eq!(v[&3], keep(Reason::ChildOf { parent: d(4) }));
}

#[test]
fn older_than_keeps_young_hash_tagged_images_beyond_n() {
    let pol = Policy {
        older_than_secs: 10 * DAY,
        ..policy(1)
    };
    let p = plan_repository(
        &B::new("app")
            .image_at(1, Some(NOW - 2 * DAY))
            .image_at(2, Some(NOW - 5 * DAY))
            .image_at(3, Some(NOW - 20 * DAY))
            .tag("abcdef1", 1)
            .tag("abcdef2", 2)
            .tag("abcdef3", 3)
            .0,
        &pol,
    );
    let v = verdicts(&p);
    assert_eq!(v[&1], keep(Reason::HashTagKept { rank: 0 }));
    assert_eq!(v[&2], keep(Reason::HashTagRecent { rank: 1 }));
    assert_eq!(v[&3], del(Reason::HashTagExpired { rank: 2 }));
}

#[test]
fn extra_hash_tag_patterns_add_to_the_first() {
    let pol = Policy {
        extra_hash_tags: vec![Regex::new("^git-[0-9a-f]+$").expect("regex")],
        ..policy(0)
    };
    assert_eq!(classify_tag("git-abc", &pol), TagClass::Hash);
    assert_eq!(classify_tag("abcdef1", &pol), TagClass::Hash);
    assert_eq!(classify_tag("git-xyz", &pol), TagClass::Version);
}

#[test]
fn a_hash_tagged_image_with_an_unreadable_config_fails_its_repository_closed() {
    // Without its config, image 1 (the oldest build) would rank by push time as the newest.
    let b = B::new("app")
        .image_at(1, Some(OLD - 9 * DAY))
        .image_at(2, Some(OLD - 2 * DAY))
        .image_at(3, Some(OLD - DAY))
        .tag_at("aaaaaaa1", 1, NOW - 2 * 3600)
        .tag("aaaaaaa2", 2)
        .tag("aaaaaaa3", 3);
    let healthy = b.plan(2);
    assert_eq!(
        verdicts(&healthy)[&1],
        del(Reason::HashTagExpired { rank: 2 })
    );
    let p = b.bad_config(1).plan(2);
    assert_eq!(p.problems.len(), 1, "{:?}", p.problems);
    assert!(p.problems[0].contains("/x/data"), "{:?}", p.problems);
    assert_eq!(p.delete_count(), 0);
    assert!(
        verdicts(&p)
            .values()
            .all(|v| *v == keep(Reason::FailClosed))
    );
}

#[test]
fn an_index_ranked_by_a_child_with_an_unreadable_config_fails_closed() {
    let p = B::new("app")
        .image(1)
        .image(2)
        .index(3, &[1])
        .index(4, &[2])
        .tag("bbbbbbb3", 3)
        .tag("bbbbbbb4", 4)
        .bad_config(2)
        .plan(1);
    assert_eq!(p.problems.len(), 1, "{:?}", p.problems);
    assert_eq!(p.delete_count(), 0);
}

#[test]
fn unreadable_configs_outside_the_ranking_change_nothing() {
    let p = B::new("app")
        .image(1)
        .image(2)
        .tag("latest", 1)
        .bad_config(1)
        .bad_config(2)
        .plan(10);
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    assert_eq!(verdicts(&p)[&2], del(Reason::Untagged));
}

#[test]
fn a_hash_tagged_image_without_a_date_is_ranked_by_push_time_with_a_note() {
    let p = B::new("app")
        .image_at(1, None)
        .image(2)
        .tag("ccccccc1", 1)
        .tag("ccccccc2", 2)
        .plan(10);
    assert!(p.problems.is_empty());
    assert_eq!(p.notes.len(), 1, "{:?}", p.notes);
    assert!(p.notes[0].contains("no creation date"), "{:?}", p.notes);
}
