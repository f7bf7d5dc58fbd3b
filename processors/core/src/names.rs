//! Friendly display names ("Fluffy Panda") for anonymous visitors.
//!
//! A name is a pure function of the anonymous id (as docs/design.md says: the same visitor
//! id reads the same in every funnel and on every node): FNV-1a (see [`crate::hash`])
//! seeds ChaCha8, whose output stream is fixed by its specification, and the words are
//! picked with our own multiply-shift reduction rather than `rand`'s range sampling,
//! whose algorithm has changed between releases. The word lists are append-never: a
//! change to them or to this function renames visitors, which the pinned-names test
//! exists to stop.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::hash::stable_hash;

const ADJECTIVES: [&str; 120] = [
    "Agile",
    "Amber",
    "Ancient",
    "Azure",
    "Bashful",
    "Bold",
    "Brave",
    "Breezy",
    "Bright",
    "Brisk",
    "Bubbly",
    "Calm",
    "Carefree",
    "Charming",
    "Cheerful",
    "Clever",
    "Cosmic",
    "Cozy",
    "Crimson",
    "Curious",
    "Daring",
    "Dapper",
    "Dazzling",
    "Dreamy",
    "Eager",
    "Electric",
    "Elegant",
    "Emerald",
    "Fancy",
    "Fearless",
    "Feisty",
    "Fluffy",
    "Frosty",
    "Gentle",
    "Giddy",
    "Gleaming",
    "Golden",
    "Graceful",
    "Grand",
    "Happy",
    "Hasty",
    "Hidden",
    "Humble",
    "Icy",
    "Jazzy",
    "Jolly",
    "Jovial",
    "Kind",
    "Lively",
    "Lucky",
    "Lunar",
    "Magic",
    "Majestic",
    "Mellow",
    "Merry",
    "Mighty",
    "Misty",
    "Modest",
    "Nimble",
    "Noble",
    "Peppy",
    "Perky",
    "Placid",
    "Playful",
    "Plucky",
    "Polite",
    "Proud",
    "Quick",
    "Quiet",
    "Quirky",
    "Radiant",
    "Rapid",
    "Rosy",
    "Royal",
    "Rustic",
    "Sassy",
    "Scarlet",
    "Serene",
    "Shiny",
    "Silent",
    "Silky",
    "Silver",
    "Sleepy",
    "Sly",
    "Smooth",
    "Snappy",
    "Snowy",
    "Solar",
    "Sparkly",
    "Speedy",
    "Spicy",
    "Spry",
    "Starry",
    "Steady",
    "Stormy",
    "Sturdy",
    "Sunny",
    "Swift",
    "Tender",
    "Thrifty",
    "Tidy",
    "Tiny",
    "Tranquil",
    "Trusty",
    "Velvet",
    "Vivid",
    "Wandering",
    "Warm",
    "Whimsical",
    "Wild",
    "Windy",
    "Wise",
    "Witty",
    "Wobbly",
    "Zany",
    "Zealous",
    "Zesty",
    "Zippy",
    "Bouncy",
    "Cobalt",
];

const ANIMALS: [&str; 100] = [
    "Aardvark",
    "Albatross",
    "Alpaca",
    "Antelope",
    "Armadillo",
    "Badger",
    "Beaver",
    "Bison",
    "Bobcat",
    "Buffalo",
    "Camel",
    "Capybara",
    "Caracal",
    "Cheetah",
    "Chinchilla",
    "Cobra",
    "Condor",
    "Cougar",
    "Coyote",
    "Crane",
    "Dingo",
    "Dolphin",
    "Dormouse",
    "Eagle",
    "Echidna",
    "Elephant",
    "Elk",
    "Falcon",
    "Ferret",
    "Finch",
    "Flamingo",
    "Fox",
    "Gazelle",
    "Gecko",
    "Gibbon",
    "Giraffe",
    "Gopher",
    "Gorilla",
    "Hamster",
    "Hare",
    "Hedgehog",
    "Heron",
    "Hippo",
    "Hornbill",
    "Ibis",
    "Iguana",
    "Impala",
    "Jackal",
    "Jaguar",
    "Kangaroo",
    "Kestrel",
    "Kiwi",
    "Koala",
    "Lemur",
    "Leopard",
    "Llama",
    "Lynx",
    "Manatee",
    "Meerkat",
    "Mongoose",
    "Moose",
    "Narwhal",
    "Newt",
    "Ocelot",
    "Octopus",
    "Okapi",
    "Orca",
    "Otter",
    "Owl",
    "Panda",
    "Pangolin",
    "Panther",
    "Parrot",
    "Pelican",
    "Penguin",
    "Platypus",
    "Puffin",
    "Quail",
    "Quokka",
    "Rabbit",
    "Raccoon",
    "Raven",
    "Reindeer",
    "Salamander",
    "Seal",
    "Sloth",
    "Sparrow",
    "Squirrel",
    "Stingray",
    "Swan",
    "Tapir",
    "Tiger",
    "Toucan",
    "Turtle",
    "Walrus",
    "Weasel",
    "Whale",
    "Wolf",
    "Wombat",
    "Yak",
];

/// Number of distinct names.
pub const COMBINATIONS: usize = ADJECTIVES.len() * ANIMALS.len();

// The design promises at least 10,000 combinations (docs/design.md).
const _: () = assert!(COMBINATIONS >= 10_000);

/// The display name of a visitor. Stable forever for the same inputs.
pub fn display_name(anonymous_id: &str) -> String {
    let seed = stable_hash(&["funnelfold.display_name.v1", anonymous_id]);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let adjective = ADJECTIVES[pick(rng.next_u64(), ADJECTIVES.len())];
    let animal = ANIMALS[pick(rng.next_u64(), ANIMALS.len())];
    let mut name = String::with_capacity(adjective.len() + animal.len() + 1);
    name.push_str(adjective);
    name.push(' ');
    name.push_str(animal);
    name
}

/// Lemire's multiply-shift: maps a uniform u64 onto 0..n with negligible bias.
fn pick(x: u64, n: usize) -> usize {
    ((u128::from(x) * n as u128) >> 64) as usize
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn has_at_least_ten_thousand_distinct_names() {
        let adjectives: HashSet<_> = ADJECTIVES.iter().collect();
        let animals: HashSet<_> = ANIMALS.iter().collect();
        assert_eq!(adjectives.len(), ADJECTIVES.len(), "duplicate adjective");
        assert_eq!(animals.len(), ANIMALS.len(), "duplicate animal");
    }

    #[test]
    fn names_spread_over_the_combinations() {
        let names: HashSet<String> = (0..20_000)
            .map(|i| display_name(&format!("visitor-{i}")))
            .collect();
        // 20k draws from 12k names leave about 12k * (1 - e^-1.67) ≈ 9.8k distinct.
        assert!(names.len() > 9_000, "only {} distinct names", names.len());
    }

    /// These names are promises to users: a visitor called "Fluffy Gibbon" yesterday
    /// is "Fluffy Gibbon" after any upgrade. If this test fails, the change renames
    /// every visitor: revert it.
    #[test]
    fn pinned_names_never_change() {
        for (id, name) in [
            ("anon-direct", "Whimsical Salamander"),
            ("anon-gclid", "Fluffy Gibbon"),
            ("anon-msclkid", "Bubbly Gibbon"),
            ("anon-dup", "Grand Alpaca"),
            ("anon-late", "Graceful Leopard"),
            ("anon-rich", "Agile Capybara"),
        ] {
            assert_eq!(display_name(id), name, "display name of {id}");
        }
    }
}
