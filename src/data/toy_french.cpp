// The embedded toy-French task (defined in docs/toy-french-task.md): a sentence
// is sampled as a small structure, then written out in English and French;
// an English sentence can also be parsed back and translated.
// Chapter 8 (docs/08-translation.md).
#include <algorithm>
#include <array>
#include <functional>
#include <unordered_set>

#include "attend/data.hpp"

namespace attend::data {

namespace {

// --- the vocabulary of the spec ---

struct Noun {
  const char *en_sg, *en_pl, *fr_sg, *fr_pl;
  bool feminine;
};
const std::array<Noun, 13> kNouns = {{
    {"cat", "cats", "chat", "chats", false},          {"dog", "dogs", "chien", "chiens", false},
    {"horse", "horses", "cheval", "chevaux", false},  {"boat", "boats", "bateau", "bateaux", false},
    {"boy", "boys", "garçon", "garçons", false},      {"teacher", "teachers", "professeur", "professeurs", false},
    {"house", "houses", "maison", "maisons", true},   {"car", "cars", "voiture", "voitures", true},
    {"river", "rivers", "rivière", "rivières", true}, {"city", "cities", "ville", "villes", true},
    {"girl", "girls", "fille", "filles", true},       {"table", "tables", "table", "tables", true},
    {"bank", "banks", "banque", "banques", true},
}};
constexpr size_t kBank = 12, kRiver = 8;

struct Adjective {
  const char* en;
  std::array<const char*, 4> fr;  // m.sg, f.sg, m.pl, f.pl
  bool before_noun;
};
const std::array<Adjective, 8> kAdjectives = {{
    {"small", {"petit", "petite", "petits", "petites"}, true},
    {"big", {"grand", "grande", "grands", "grandes"}, true},
    {"old", {"vieux", "vieille", "vieux", "vieilles"}, true},
    {"red", {"rouge", "rouge", "rouges", "rouges"}, false},
    {"black", {"noir", "noire", "noirs", "noires"}, false},
    {"green", {"vert", "verte", "verts", "vertes"}, false},
    {"happy", {"content", "contente", "contents", "contentes"}, false},
    {"fast", {"rapide", "rapide", "rapides", "rapides"}, false},
}};

// Persons in the order of the verb table: je, tu, il/elle/singular noun, nous, ils/plural noun.
enum Person { kFirstSingular, kSecondSingular, kThirdSingular, kFirstPlural, kThirdPlural };
struct Verb {
  const char *en_base, *en_3sg;
  std::array<const char*, 5> fr;
};
const std::array<Verb, 5> kVerbs = {{
    {"see", "sees", {"vois", "vois", "voit", "voyons", "voient"}},
    {"like", "likes", {"aime", "aimes", "aime", "aimons", "aiment"}},
    {"eat", "eats", {"mange", "manges", "mange", "mangeons", "mangent"}},
    {"follow", "follows", {"suis", "suis", "suit", "suivons", "suivent"}},
    {"find", "finds", {"trouve", "trouves", "trouve", "trouvons", "trouvent"}},
}};

struct Pronoun {
  const char *en, *fr;
  Person person;
};
const std::array<Pronoun, 6> kPronouns = {{
    {"i", "je", kFirstSingular}, {"you", "tu", kSecondSingular}, {"he", "il", kThirdSingular},
    {"she", "elle", kThirdSingular}, {"we", "nous", kFirstPlural}, {"they", "ils", kThirdPlural},
}};

const std::array<const char*, 3> kPrepositionsEn = {"near", "in", "with"};
const std::array<const char*, 3> kPrepositionsFr = {"près de", "dans", "avec"};

enum class Determiner { The, A, Some };

// --- a sentence as a structure ---

struct NounPhrase {
  Determiner determiner = Determiner::The;
  std::vector<size_t> adjectives;  // indices into kAdjectives, English order
  size_t noun = 0;
  bool plural = false;
};

struct Sentence {
  int pronoun = -1;  // index into kPronouns, or -1 for a noun-phrase subject
  NounPhrase subject;
  bool negated = false;
  size_t verb = 0;
  NounPhrase object;
  int preposition = -1;  // index into kPrepositions*, or -1 for none
  NounPhrase prepositional_object;
};

Person person_of(const Sentence& s) {
  if (s.pronoun >= 0) return kPronouns[static_cast<size_t>(s.pronoun)].person;
  return s.subject.plural ? kThirdPlural : kThirdSingular;
}

bool mentions_river(const Sentence& s) {
  auto is_river = [](const NounPhrase& np) { return np.noun == kRiver; };
  return (s.pronoun < 0 && is_river(s.subject)) || is_river(s.object) ||
         (s.preposition >= 0 && is_river(s.prepositional_object));
}

// --- sampling (the spec's "Sampling" section) ---

NounPhrase sample_noun_phrase(Generator& gen) {
  NounPhrase np;
  np.plural = gen.randint(2) == 1;
  const int64_t choice = gen.randint(2);  // the, a (singular) or the, some (plural)
  np.determiner = choice == 0 ? Determiner::The : (np.plural ? Determiner::Some : Determiner::A);
  const int64_t count = gen.randint(3);
  while (static_cast<int64_t>(np.adjectives.size()) < count) {
    const size_t a = static_cast<size_t>(gen.randint(static_cast<int64_t>(kAdjectives.size())));
    if (std::find(np.adjectives.begin(), np.adjectives.end(), a) == np.adjectives.end()) np.adjectives.push_back(a);
  }
  np.noun = static_cast<size_t>(gen.randint(static_cast<int64_t>(kNouns.size())));
  return np;
}

Sentence sample_sentence(Generator& gen) {
  Sentence s;
  if (gen.randint(4) == 0) {
    s.pronoun = static_cast<int>(gen.randint(static_cast<int64_t>(kPronouns.size())));
  } else {
    s.subject = sample_noun_phrase(gen);
  }
  s.negated = gen.randint(4) == 0;
  s.verb = static_cast<size_t>(gen.randint(static_cast<int64_t>(kVerbs.size())));
  s.object = sample_noun_phrase(gen);
  if (gen.randint(2) == 0) {
    s.preposition = static_cast<int>(gen.randint(static_cast<int64_t>(kPrepositionsEn.size())));
    s.prepositional_object = sample_noun_phrase(gen);
  }
  return s;
}

// --- writing English ---

void append(std::string& out, const std::string& word) {
  if (!out.empty()) out += ' ';
  out += word;
}

void english_noun_phrase(const NounPhrase& np, std::string& out) {
  append(out, np.determiner == Determiner::The ? "the" : np.determiner == Determiner::A ? "a" : "some");
  for (size_t a : np.adjectives) append(out, kAdjectives[a].en);
  append(out, np.plural ? kNouns[np.noun].en_pl : kNouns[np.noun].en_sg);
}

std::string english(const Sentence& s) {
  std::string out;
  if (s.pronoun >= 0) {
    append(out, kPronouns[static_cast<size_t>(s.pronoun)].en);
  } else {
    english_noun_phrase(s.subject, out);
  }
  const bool third_singular = person_of(s) == kThirdSingular;
  if (s.negated) {
    append(out, third_singular ? "does not" : "do not");
    append(out, kVerbs[s.verb].en_base);
  } else {
    append(out, third_singular ? kVerbs[s.verb].en_3sg : kVerbs[s.verb].en_base);
  }
  english_noun_phrase(s.object, out);
  if (s.preposition >= 0) {
    append(out, kPrepositionsEn[static_cast<size_t>(s.preposition)]);
    english_noun_phrase(s.prepositional_object, out);
  }
  append(out, ".");
  return out;
}

// --- writing French ---

// Determiner, "before" adjectives, noun, "after" adjectives, all agreeing.
// After "de", the article contracts: de le -> du, de les -> des, de des -> de.
void french_noun_phrase(const NounPhrase& np, bool river_in_sentence, bool after_de, std::string& out) {
  const Noun& noun = kNouns[np.noun];
  const bool bank_as_shore = np.noun == kBank && river_in_sentence;
  const bool feminine = noun.feminine;  // banque and rive are both feminine
  std::string determiner;
  switch (np.determiner) {
    case Determiner::The: determiner = np.plural ? "les" : (feminine ? "la" : "le"); break;
    case Determiner::A: determiner = feminine ? "une" : "un"; break;
    case Determiner::Some: determiner = "des"; break;
  }
  if (after_de) {
    if (determiner == "le") {
      out.resize(out.size() - 3);  // drop " de"
      determiner = "du";
    } else if (determiner == "les") {
      out.resize(out.size() - 3);
      determiner = "des";
    } else if (determiner == "des") {
      determiner = "";  // "de des" -> "de"
    }
  }
  if (!determiner.empty()) append(out, determiner);
  const size_t form = (np.plural ? 2 : 0) + (feminine ? 1 : 0);
  for (size_t a : np.adjectives) {
    if (kAdjectives[a].before_noun) append(out, kAdjectives[a].fr[form]);
  }
  if (bank_as_shore) {
    append(out, np.plural ? "rives" : "rive");
  } else {
    append(out, np.plural ? noun.fr_pl : noun.fr_sg);
  }
  for (size_t a : np.adjectives) {
    if (!kAdjectives[a].before_noun) append(out, kAdjectives[a].fr[form]);
  }
}

std::string french(const Sentence& s) {
  const bool river = mentions_river(s);
  std::string out;
  if (s.pronoun >= 0) {
    append(out, kPronouns[static_cast<size_t>(s.pronoun)].fr);
  } else {
    french_noun_phrase(s.subject, river, false, out);
  }
  const char* verb = kVerbs[s.verb].fr[person_of(s)];
  if (s.negated) {
    append(out, "ne");
    append(out, verb);
    append(out, "pas");
  } else {
    append(out, verb);
  }
  french_noun_phrase(s.object, river, false, out);
  if (s.preposition >= 0) {
    append(out, kPrepositionsFr[static_cast<size_t>(s.preposition)]);
    french_noun_phrase(s.prepositional_object, river, s.preposition == 0, out);
  }
  append(out, ".");
  return out;
}

// --- reading English back ---

class Parser {
 public:
  explicit Parser(const std::string& text) : text_(text) {
    std::string word;
    for (char c : text) {
      if (c == ' ') {
        if (!word.empty()) tokens_.push_back(word);
        word.clear();
      } else {
        word += c;
      }
    }
    if (!word.empty()) tokens_.push_back(word);
  }

  Sentence sentence() {
    Sentence s;
    for (size_t p = 0; p < kPronouns.size(); ++p) {
      if (peek() == kPronouns[p].en) {
        s.pronoun = static_cast<int>(p);
        ++pos_;
        break;  // one pronoun: "i you see ..." is not a sentence
      }
    }
    if (s.pronoun < 0) s.subject = noun_phrase();
    const bool third_singular = person_of(s) == kThirdSingular;
    if (peek() == "does" || peek() == "do") {
      const std::string aux = next();
      if ((aux == "does") != third_singular) fail("'" + aux + " not' does not agree with the subject");
      if (next() != "not") fail("expected 'not' after '" + aux + "'");
      s.negated = true;
      s.verb = verb(/*third_singular=*/false);
    } else {
      s.verb = verb(third_singular);
    }
    s.object = noun_phrase();
    for (size_t p = 0; p < kPrepositionsEn.size(); ++p) {
      if (peek() == kPrepositionsEn[p]) {
        ++pos_;
        s.preposition = static_cast<int>(p);
        s.prepositional_object = noun_phrase();
        break;
      }
    }
    if (next() != ".") fail("expected '.' at the end");
    if (pos_ != tokens_.size()) fail("unexpected words after '.'");
    return s;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw Error("toy-french: '" + text_ + "' is not a sentence of the grammar: " + what);
  }
  std::string peek() const { return pos_ < tokens_.size() ? tokens_[pos_] : ""; }
  std::string next() {
    if (pos_ >= tokens_.size()) fail("it ends too early");
    return tokens_[pos_++];
  }

  size_t verb(bool third_singular) {
    const std::string w = next();
    for (size_t v = 0; v < kVerbs.size(); ++v) {
      if (w == (third_singular ? kVerbs[v].en_3sg : kVerbs[v].en_base)) return v;
    }
    fail("'" + w + "' is not a verb form that fits here");
  }

  NounPhrase noun_phrase() {
    NounPhrase np;
    const std::string d = next();
    if (d == "the") np.determiner = Determiner::The;
    else if (d == "a") np.determiner = Determiner::A;
    else if (d == "some") np.determiner = Determiner::Some;
    else fail("expected a determiner, got '" + d + "'");
    for (;;) {
      const std::string w = next();
      bool found = false;
      for (size_t a = 0; a < kAdjectives.size() && !found; ++a) {
        if (w == kAdjectives[a].en) {
          if (std::find(np.adjectives.begin(), np.adjectives.end(), a) != np.adjectives.end()) fail("adjective '" + w + "' twice");
          np.adjectives.push_back(a);
          found = true;
        }
      }
      if (found) continue;
      for (size_t n = 0; n < kNouns.size() && !found; ++n) {
        if (w == kNouns[n].en_sg || w == kNouns[n].en_pl) {
          np.noun = n;
          np.plural = w == kNouns[n].en_pl;
          found = true;
        }
      }
      if (!found) fail("'" + w + "' is neither an adjective nor a noun");
      break;
    }
    if (np.adjectives.size() > 2) fail("more than 2 adjectives");
    if ((np.determiner == Determiner::A && np.plural) || (np.determiner == Determiner::Some && !np.plural)) {
      fail("the determiner does not agree with the noun");
    }
    return np;
  }

  std::string text_;
  std::vector<std::string> tokens_;
  size_t pos_ = 0;
};

// A random digit sequence of 3 to 10 digits, as space-separated tokens.
std::string random_digits(Generator& gen, std::vector<std::string>& digits) {
  digits.assign(static_cast<size_t>(3 + gen.randint(8)), "");
  std::string out;
  for (std::string& d : digits) {
    d = std::to_string(gen.randint(10));
    append(out, d);
  }
  return out;
}

}  // namespace

uint64_t fnv1a(std::string_view bytes, uint64_t hash) {
  for (const unsigned char c : bytes) {
    hash ^= c;
    hash *= 1099511628211ull;  // the 64-bit FNV prime
  }
  return hash;
}

SentencePair sample_toy_french(Generator& gen) {
  const Sentence s = sample_sentence(gen);
  return {english(s), french(s)};
}

std::string translate_toy_french(const std::string& english_sentence) {
  return french(Parser(english_sentence).sentence());
}

Split split_of(const std::string& source) {
  // 80% train, 10% valid, 10% test.
  const uint64_t bucket = fnv1a(source) % 10;
  return bucket < 8 ? Split::Train : bucket == 8 ? Split::Valid : Split::Test;
}

Split parse_split(const std::string& name) {
  if (name == "train") return Split::Train;
  if (name == "valid") return Split::Valid;
  if (name == "test") return Split::Test;
  throw Error("unknown split '" + name + "' (train, valid or test)");
}

const std::vector<std::string>& task_names() {
  static const std::vector<std::string> names = {"toy-french", "copy", "reverse"};
  return names;
}

void check_task_name(const std::string& task) {
  const auto& names = task_names();
  if (std::find(names.begin(), names.end(), task) == names.end()) {
    throw Error("unknown task '" + task + "' (toy-french, copy or reverse)");
  }
}

void generate_task(const std::string& task, Split split, int64_t n, uint64_t seed,
                   const std::function<void(const SentencePair&)>& emit) {
  check_task_name(task);
  Generator gen(seed);
  // The sources emitted so far, by their 64-bit hash: a set of 200,000
  // strings would cost more memory than the pairs themselves. (Two different
  // sentences with the same hash, about a 1e-9 chance at that size, would
  // only mean one fewer distinct pair drawn.)
  std::unordered_set<uint64_t> seen;
  std::vector<std::string> digits;
  int64_t attempts = 0, emitted = 0;
  while (emitted < n) {
    // Short digit sequences run out: stop rather than loop forever.
    if (++attempts > 100 * n + 100000) {
      throw Error("generate_task: could not find " + std::to_string(n) + " distinct examples of '" + task + "'");
    }
    SentencePair pair;
    if (task == "toy-french") {
      pair = sample_toy_french(gen);
    } else {
      pair.source = random_digits(gen, digits);
      if (task == "reverse") std::reverse(digits.begin(), digits.end());
      for (const std::string& d : digits) append(pair.target, d);
    }
    if (split_of(pair.source) != split || !seen.insert(fnv1a(pair.source)).second) continue;
    ++emitted;
    emit(pair);
  }
}

std::vector<SentencePair> generate_task(const std::string& task, Split split, int64_t n, uint64_t seed) {
  std::vector<SentencePair> out;
  out.reserve(static_cast<size_t>(std::max<int64_t>(n, 0)));  // no regrowth: no copies left behind
  generate_task(task, split, n, seed, [&out](const SentencePair& pair) { out.push_back(pair); });
  return out;
}

}  // namespace attend::data
