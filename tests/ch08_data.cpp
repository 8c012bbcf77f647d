// Chapter 8 tests, data side (docs/08-translation.md): the toy-French task
// checked against docs/toy-french-task.md (examples, tables, rules,
// sampling statistics, splits), the copy and reverse tasks, the tokenizer,
// TSV files and their errors, vocabularies, padded and bucketed batches with
// their masks, and the scores (corpus BLEU and exact match) worked by hand.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "attend/attention.hpp"
#include "attend/data.hpp"
#include "attend/metrics.hpp"
#include "attend/random.hpp"
#include "attend/tensor.hpp"
#include "catch_compat.hpp"
#include "test_files.hpp"

using attend::Generator;
using attend::Shape;
using attend::Tensor;
namespace data = attend::data;
namespace train = attend::train;
using data::Split;
using data::Vocabulary;
using attend_test::TempDir;
using attend_test::write_file;

namespace {

std::vector<std::string> words(const std::string& sentence) {
  std::istringstream in(sentence);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

bool contains_word(const std::string& sentence, const std::string& word) {
  const std::vector<std::string> w = words(sentence);
  return std::find(w.begin(), w.end(), word) != w.end();
}

// The spec's tables, written out again here (independently of src/data) so
// that the generator is checked against the spec and not against itself.
struct SpecNoun {
  std::string en_sg, en_pl, fr_sg, fr_pl;
  bool feminine;
};
const std::vector<SpecNoun> kSpecNouns = {
    {"cat", "cats", "chat", "chats", false},          {"dog", "dogs", "chien", "chiens", false},
    {"horse", "horses", "cheval", "chevaux", false},  {"boat", "boats", "bateau", "bateaux", false},
    {"boy", "boys", "garçon", "garçons", false},      {"teacher", "teachers", "professeur", "professeurs", false},
    {"house", "houses", "maison", "maisons", true},   {"car", "cars", "voiture", "voitures", true},
    {"river", "rivers", "rivière", "rivières", true}, {"city", "cities", "ville", "villes", true},
    {"girl", "girls", "fille", "filles", true},       {"table", "tables", "table", "tables", true},
    {"bank", "banks", "banque", "banques", true},
};
struct SpecAdjective {
  std::string en, m_sg, f_sg, m_pl, f_pl;
  bool before;
};
const std::vector<SpecAdjective> kSpecAdjectives = {
    {"small", "petit", "petite", "petits", "petites", true},
    {"big", "grand", "grande", "grands", "grandes", true},
    {"old", "vieux", "vieille", "vieux", "vieilles", true},
    {"red", "rouge", "rouge", "rouges", "rouges", false},
    {"black", "noir", "noire", "noirs", "noires", false},
    {"green", "vert", "verte", "verts", "vertes", false},
    {"happy", "content", "contente", "contents", "contentes", false},
    {"fast", "rapide", "rapide", "rapides", "rapides", false},
};
struct SpecVerb {
  std::string base, third, je, tu, il, nous, ils;
};
const std::vector<SpecVerb> kSpecVerbs = {
    {"see", "sees", "vois", "vois", "voit", "voyons", "voient"},
    {"like", "likes", "aime", "aimes", "aime", "aimons", "aiment"},
    {"eat", "eats", "mange", "manges", "mange", "mangeons", "mangent"},
    {"follow", "follows", "suis", "suis", "suit", "suivons", "suivent"},
    {"find", "finds", "trouve", "trouves", "trouve", "trouvons", "trouvent"},
};
const std::set<std::string> kPronounsEn = {"i", "you", "he", "she", "we", "they"};

}  // namespace

// ---------------------------------------------------------------------------
// The toy-French generator against the spec
// ---------------------------------------------------------------------------

TEST_CASE("toy-French: every example of the spec is translated exactly", "[ch08]") {
  const std::vector<std::pair<std::string, std::string>> examples = {
      {"the small cat sees the red car .", "le petit chat voit la voiture rouge ."},
      {"she does not like the old green houses near the bank .",
       "elle ne aime pas les vieilles maisons vertes près de la banque ."},
      {"the teachers follow some fast black horses near the river .",
       "les professeurs suivent des chevaux rapides noirs près de la rivière ."},
      {"we eat the bank near the river .", "nous mangeons la rive près de la rivière ."},
      {"i see a big boat with the cats .", "je vois un grand bateau avec les chats ."},
      {"the girl does not find the small boats near some banks .",
       "la fille ne trouve pas les petits bateaux près de banques ."},
  };
  for (const auto& [english, french] : examples) {
    INFO(english);
    CHECK(data::translate_toy_french(english) == french);
  }
}

TEST_CASE("toy-French: every noun, adjective, verb, pronoun and determiner of the spec's tables", "[ch08]") {
  SECTION("nouns, singular and plural, with the article of their gender") {
    for (const SpecNoun& n : kSpecNouns) {
      INFO(n.en_sg);
      CHECK(data::translate_toy_french("i see the " + n.en_sg + " .") ==
            "je vois " + std::string(n.feminine ? "la " : "le ") + n.fr_sg + " .");
      CHECK(data::translate_toy_french("i see the " + n.en_pl + " .") == "je vois les " + n.fr_pl + " .");
      CHECK(data::translate_toy_french("i see a " + n.en_sg + " .") ==
            "je vois " + std::string(n.feminine ? "une " : "un ") + n.fr_sg + " .");
      CHECK(data::translate_toy_french("i see some " + n.en_pl + " .") == "je vois des " + n.fr_pl + " .");
    }
  }
  SECTION("adjectives: the four forms, before or after the noun") {
    for (const SpecAdjective& a : kSpecAdjectives) {
      INFO(a.en);
      auto expect = [&](const std::string& det, const std::string& form, const std::string& noun) {
        return "je vois " + det + " " + (a.before ? form + " " + noun : noun + " " + form) + " .";
      };
      CHECK(data::translate_toy_french("i see the " + a.en + " cat .") == expect("le", a.m_sg, "chat"));
      CHECK(data::translate_toy_french("i see the " + a.en + " house .") == expect("la", a.f_sg, "maison"));
      CHECK(data::translate_toy_french("i see the " + a.en + " cats .") == expect("les", a.m_pl, "chats"));
      CHECK(data::translate_toy_french("i see the " + a.en + " houses .") == expect("les", a.f_pl, "maisons"));
    }
  }
  SECTION("verbs: every person, with and without negation") {
    for (const SpecVerb& v : kSpecVerbs) {
      INFO(v.base);
      const std::vector<std::tuple<std::string, std::string, std::string, bool>> subjects = {
          // English subject, French subject, French verb form, English 3rd person singular?
          {"i", "je", v.je, false},         {"you", "tu", v.tu, false},         {"he", "il", v.il, true},
          {"she", "elle", v.il, true},      {"we", "nous", v.nous, false},      {"they", "ils", v.ils, false},
          {"the dog", "le chien", v.il, true}, {"the dogs", "les chiens", v.ils, false},
          {"a girl", "une fille", v.il, true}, {"some girls", "des filles", v.ils, false},
      };
      for (const auto& [en, fr, form, third] : subjects) {
        INFO(en);
        CHECK(data::translate_toy_french(en + " " + (third ? v.third : v.base) + " the cat .") ==
              fr + " " + form + " le chat .");
        CHECK(data::translate_toy_french(en + (third ? " does not " : " do not ") + v.base + " the cat .") ==
              fr + " ne " + form + " pas le chat .");
      }
    }
  }
  SECTION("prepositions: near -> près de, in -> dans, with -> avec") {
    CHECK(data::translate_toy_french("i see the cat in the house .") == "je vois le chat dans la maison .");
    CHECK(data::translate_toy_french("i see the cat with the dog .") == "je vois le chat avec le chien .");
    CHECK(data::translate_toy_french("i see the cat near the house .") == "je vois le chat près de la maison .");
  }
}

TEST_CASE("toy-French: bank becomes rive only when river(s) is in the sentence, before or after", "[ch08]") {
  // No river anywhere: banque.
  CHECK(data::translate_toy_french("the cat sees the bank .") == "le chat voit la banque .");
  CHECK(data::translate_toy_french("the banks see the cars near the city .") ==
        "les banques voient les voitures près de la ville .");
  // River after the bank: in the object, or in the prepositional phrase.
  CHECK(data::translate_toy_french("the bank sees the river .") == "la rive voit la rivière .");
  CHECK(data::translate_toy_french("the old banks like the cat in the rivers .") ==
        "les vieilles rives aiment le chat dans les rivières .");
  // River before the bank.
  CHECK(data::translate_toy_french("the rivers do not follow some green banks .") ==
        "les rivières ne suivent pas des rives vertes .");
  CHECK(data::translate_toy_french("a river finds the dog with a bank .") ==
        "une rivière trouve le chien avec une rive .");
  // Every bank of the sentence changes, wherever it is.
  CHECK(data::translate_toy_french("the bank sees a bank near the river .") ==
        "la rive voit une rive près de la rivière .");

  // And in sampled sentences: banque/rive exactly as the rule says.
  Generator gen(11);
  int64_t bank_then_river = 0, river_then_bank = 0, bank_alone = 0;
  for (int i = 0; i < 5000; ++i) {
    const data::SentencePair p = data::sample_toy_french(gen);
    const std::vector<std::string> en = words(p.source);
    const auto bank = std::find_if(en.begin(), en.end(), [](const std::string& w) { return w == "bank" || w == "banks"; });
    const auto river =
        std::find_if(en.begin(), en.end(), [](const std::string& w) { return w == "river" || w == "rivers"; });
    const bool rive = contains_word(p.target, "rive") || contains_word(p.target, "rives");
    const bool banque = contains_word(p.target, "banque") || contains_word(p.target, "banques");
    INFO(p.source << " -> " << p.target);
    if (bank == en.end()) {
      CHECK_FALSE(rive);
      CHECK_FALSE(banque);
    } else if (river == en.end()) {
      CHECK_FALSE(rive);
      CHECK(banque);
      ++bank_alone;
    } else {
      CHECK(rive);
      CHECK_FALSE(banque);
      ++(bank < river ? bank_then_river : river_then_bank);
    }
  }
  // The sample covered both orders (each is a few percent of the sentences).
  CHECK(bank_then_river > 20);
  CHECK(river_then_bank > 20);
  CHECK(bank_alone > 200);
}

TEST_CASE("toy-French: de contracts with the article that follows it", "[ch08]") {
  CHECK(data::translate_toy_french("i see the cat near the dog .") == "je vois le chat près du chien .");     // de le
  CHECK(data::translate_toy_french("i see the cat near the dogs .") == "je vois le chat près des chiens .");  // de les
  CHECK(data::translate_toy_french("i see the cat near some dogs .") == "je vois le chat près de chiens .");  // de des
  CHECK(data::translate_toy_french("i see the cat near the house .") == "je vois le chat près de la maison .");
  CHECK(data::translate_toy_french("i see the cat near a dog .") == "je vois le chat près de un chien .");
  CHECK(data::translate_toy_french("i see the cat near a house .") == "je vois le chat près de une maison .");
  // With adjectives in between, the article still contracts.
  CHECK(data::translate_toy_french("i see the cat near the old red boats .") ==
        "je vois le chat près des vieux bateaux rouges .");
  CHECK(data::translate_toy_french("i see the cat near the small dog .") == "je vois le chat près du petit chien .");
  // Only after de: other prepositions, subjects and objects keep their article.
  CHECK(data::translate_toy_french("the dogs see some cats in the boat .") == "les chiens voient des chats dans le bateau .");
  CHECK(data::translate_toy_french("some dogs see the cats with some boats .") ==
        "des chiens voient les chats avec des bateaux .");
}

TEST_CASE("toy-French: negation wraps the verb in ne ... pas", "[ch08]") {
  CHECK(data::translate_toy_french("i do not see the cat .") == "je ne vois pas le chat .");
  CHECK(data::translate_toy_french("the dogs do not eat a table .") == "les chiens ne mangent pas une table .");
  CHECK(data::translate_toy_french("he does not follow the girls near the cars .") ==
        "il ne suit pas les filles près des voitures .");
  // No elision: "ne aime".
  CHECK(data::translate_toy_french("you do not like the boy .") == "tu ne aimes pas le garçon .");
  // does/do must agree with the subject.
  REQUIRE_THROWS_MENTIONING(data::translate_toy_french("she do not like the cat ."), "does not agree");
  REQUIRE_THROWS_MENTIONING(data::translate_toy_french("the cats does not like the dog ."), "does not agree");
  REQUIRE_THROWS_MENTIONING(data::translate_toy_french("she does like the cat ."), "expected 'not'");
  // After "not" comes the base form.
  REQUIRE_THROWS_MENTIONING(data::translate_toy_french("she does not likes the cat ."), "likes");
}

TEST_CASE("toy-French: adjectives take their place and agree with the noun", "[ch08]") {
  // vieux / vieille / vieux / vieilles.
  CHECK(data::translate_toy_french("i see the old boat .") == "je vois le vieux bateau .");
  CHECK(data::translate_toy_french("i see the old car .") == "je vois la vieille voiture .");
  CHECK(data::translate_toy_french("i see the old boats .") == "je vois les vieux bateaux .");
  CHECK(data::translate_toy_french("i see the old cars .") == "je vois les vieilles voitures .");
  // One before and one after: each goes to its side, whatever the English order.
  CHECK(data::translate_toy_french("i see a small red car .") == "je vois une petite voiture rouge .");
  CHECK(data::translate_toy_french("i see a red small car .") == "je vois une petite voiture rouge .");
  // Two of the same side keep the English order.
  CHECK(data::translate_toy_french("i see the green black cats .") == "je vois les chats verts noirs .");
  CHECK(data::translate_toy_french("i see the black green cats .") == "je vois les chats noirs verts .");
  CHECK(data::translate_toy_french("i see the big old table .") == "je vois la grande vieille table .");
  CHECK(data::translate_toy_french("i see the old big table .") == "je vois la vieille grande table .");
  // Agreement in the subject and after a contraction, too.
  CHECK(data::translate_toy_french("the happy girls eat the cat near the fast boys .") ==
        "les filles contentes mangent le chat près des garçons rapides .");
  // The bank as a shore (rive) is feminine like banque.
  CHECK(data::translate_toy_french("i see the old black bank near the river .") ==
        "je vois la vieille rive noire près de la rivière .");
  // An adjective of the other gender never appears: every sampled French
  // adjective form matches its noun (checked through the round trip below).
}

TEST_CASE("toy-French: sampled pairs are well formed and parse back to their translation", "[ch08]") {
  Generator gen(7);
  for (int i = 0; i < 5000; ++i) {
    const data::SentencePair p = data::sample_toy_french(gen);
    INFO(p.source << " -> " << p.target);
    for (const std::string* side : {&p.source, &p.target}) {
      REQUIRE(side->size() > 2);
      CHECK(side->substr(side->size() - 2) == " .");  // ends with the token "."
      CHECK(side->find("  ") == std::string::npos);   // single spaces
      CHECK(side->front() != ' ');
      CHECK(std::count(side->begin(), side->end(), '.') == 1);
    }
    CHECK(data::translate_toy_french(p.source) == p.target);
  }
}

TEST_CASE("toy-French: sampling statistics match the spec's probabilities", "[ch08]") {
  // 20,000 sentences from a fixed seed. Each probability p is estimated from
  // n independent draws, with standard error sqrt(p (1 - p) / n); we allow 5
  // standard errors: a correct generator fails with probability ~6e-7 for a
  // new seed, while a wrong probability (say 1/3 instead of 1/4: 0.083 away)
  // is 27 standard errors out and cannot pass.
  auto check_fraction = [](const char* what, int64_t hits, int64_t n, double p) {
    const double tolerance = 5.0 * std::sqrt(p * (1.0 - p) / static_cast<double>(n));
    const double fraction = static_cast<double>(hits) / static_cast<double>(n);
    INFO(what << ": " << hits << " / " << n << " = " << fraction << ", expected " << p << " +- " << tolerance);
    CHECK(std::fabs(fraction - p) <= tolerance);
  };
  std::set<std::string> adjectives, plural_nouns, singular_nouns;
  for (const auto& a : kSpecAdjectives) adjectives.insert(a.en);
  for (const auto& n : kSpecNouns) {
    singular_nouns.insert(n.en_sg);
    plural_nouns.insert(n.en_pl);
  }

  const int64_t n = 20000;
  Generator gen(2024);
  int64_t pronoun = 0, negated = 0, prepositional = 0, phrases = 0, plural = 0;
  int64_t singular_the = 0, singular = 0, plural_the = 0;
  std::array<int64_t, 3> adjective_count{};
  std::map<std::string, int64_t> preposition_count, noun_count;
  for (int64_t i = 0; i < n; ++i) {
    const std::vector<std::string> w = words(data::sample_toy_french(gen).source);
    pronoun += kPronounsEn.count(w[0]) ? 1 : 0;
    negated += std::count(w.begin(), w.end(), "not") > 0 ? 1 : 0;
    for (const char* p : {"near", "in", "with"}) {
      if (std::count(w.begin(), w.end(), p) > 0) {
        ++prepositional;
        ++preposition_count[p];
      }
    }
    // Each determiner opens a noun phrase: adjectives, then the noun.
    for (size_t k = 0; k < w.size(); ++k) {
      if (w[k] != "the" && w[k] != "a" && w[k] != "some") continue;
      ++phrases;
      size_t j = k + 1;
      while (adjectives.count(w[j])) ++j;
      REQUIRE(j - k - 1 <= 2);
      ++adjective_count[j - k - 1];
      const bool is_plural = plural_nouns.count(w[j]) > 0;
      REQUIRE((is_plural || singular_nouns.count(w[j]) > 0));
      ++noun_count[w[j].substr(0, 3)];  // singular and plural share it
      plural += is_plural ? 1 : 0;
      if (is_plural) {
        plural_the += w[k] == "the" ? 1 : 0;
        CHECK(w[k] != "a");
      } else {
        ++singular;
        singular_the += w[k] == "the" ? 1 : 0;
        CHECK(w[k] != "some");
      }
    }
  }
  check_fraction("pronoun subject", pronoun, n, 0.25);
  check_fraction("negation", negated, n, 0.25);
  check_fraction("prepositional phrase", prepositional, n, 0.5);
  for (const char* p : {"near", "in", "with"}) check_fraction(p, preposition_count[p], prepositional, 1.0 / 3.0);
  // A noun phrase for every subject that is not a pronoun, every object and every prepositional phrase.
  CHECK(phrases == (n - pronoun) + n + prepositional);
  for (int k = 0; k < 3; ++k) check_fraction("noun phrases with k adjectives", adjective_count[k], phrases, 1.0 / 3.0);
  check_fraction("plural noun phrases", plural, phrases, 0.5);
  check_fraction("'the' among singular determiners (the, a)", singular_the, singular, 0.5);
  check_fraction("'the' among plural determiners (the, some)", plural_the, phrases - singular, 0.5);
  REQUIRE(noun_count.size() == 13);  // the first three letters tell the 13 nouns apart
  for (const auto& [noun, count] : noun_count) {
    INFO(noun);
    check_fraction("one noun", count, phrases, 1.0 / 13.0);
  }
}

TEST_CASE("toy-French: sentences outside the grammar are refused with the reason", "[ch08]") {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"", "ends too early"},
      {"the cat sees the dog", "ends too early"},
      {"the cat sees the dog . the", "unexpected words after '.'"},
      {"the cat see the dog .", "'see' is not a verb form"},
      {"the cats sees the dog .", "'sees' is not a verb form"},
      {"a cats see the dog .", "determiner does not agree"},
      {"some cat sees the dog .", "determiner does not agree"},
      {"the small small cat sees the dog .", "adjective 'small' twice"},
      {"the small big red cat sees the dog .", "more than 2 adjectives"},
      {"the purple cat sees the dog .", "'purple' is neither an adjective nor a noun"},
      {"cat sees the dog .", "expected a determiner, got 'cat'"},
      {"The cat sees the dog .", "expected a determiner, got 'The'"},
      {"the cat sees the dog near .", "expected a determiner, got '.'"},
      {"the cat sees the dog near the river near the bank .", "expected '.'"},
      {"i you see the cat .", "'you' is not a verb form"},
      {"the cat sees the dog.", "neither an adjective nor a noun"},
  };
  for (const auto& [sentence, reason] : bad) {
    INFO("'" << sentence << "'");
    REQUIRE_THROWS_MENTIONING(data::translate_toy_french(sentence), "not a sentence of the grammar", reason.c_str());
  }
}

TEST_CASE("toy-French: the splits never share a sentence and hold about 80/10/10 percent", "[ch08]") {
  const auto train = data::generate_task("toy-french", Split::Train, 4000, 1);
  const auto valid = data::generate_task("toy-french", Split::Valid, 500, 2);
  const auto test = data::generate_task("toy-french", Split::Test, 500, 3);
  std::set<std::string> train_sources, valid_sources, test_sources;
  for (const auto& p : train) {
    train_sources.insert(p.source);
    CHECK(data::split_of(p.source) == Split::Train);
  }
  for (const auto& p : valid) {
    valid_sources.insert(p.source);
    CHECK(data::split_of(p.source) == Split::Valid);
  }
  for (const auto& p : test) {
    test_sources.insert(p.source);
    CHECK(data::split_of(p.source) == Split::Test);
  }
  REQUIRE(train_sources.size() == 4000);
  REQUIRE(valid_sources.size() == 500);
  REQUIRE(test_sources.size() == 500);
  for (const std::string& s : valid_sources) CHECK(train_sources.count(s) == 0);
  for (const std::string& s : test_sources) CHECK(train_sources.count(s) == 0);
  for (const std::string& s : test_sources) CHECK(valid_sources.count(s) == 0);

  // Proportions over 20,000 distinct sentences: 5 standard errors again
  // (sqrt(0.8 * 0.2 / 20000) = 0.0028, sqrt(0.1 * 0.9 / 20000) = 0.0021).
  Generator gen(99);
  std::set<std::string> distinct;
  while (distinct.size() < 20000) distinct.insert(data::sample_toy_french(gen).source);
  std::map<Split, int64_t> count;
  for (const std::string& s : distinct) ++count[data::split_of(s)];
  CHECK_NEAR(count[Split::Train] / 20000.0, 0.8, 5 * 0.0028);
  CHECK_NEAR(count[Split::Valid] / 20000.0, 0.1, 5 * 0.0021);
  CHECK_NEAR(count[Split::Test] / 20000.0, 0.1, 5 * 0.0021);

  CHECK(data::parse_split("train") == Split::Train);
  CHECK(data::parse_split("valid") == Split::Valid);
  CHECK(data::parse_split("test") == Split::Test);
  REQUIRE_THROWS_MENTIONING(data::parse_split("dev"), "unknown split 'dev'");
}

TEST_CASE("generate_task: deterministic per seed, n distinct examples, the right translations", "[ch08]") {
  const auto a = data::generate_task("toy-french", Split::Train, 300, 5);
  const auto b = data::generate_task("toy-french", Split::Train, 300, 5);
  const auto c = data::generate_task("toy-french", Split::Train, 300, 6);
  REQUIRE(a.size() == 300);
  std::set<std::string> sources;
  bool same_as_b = true, same_as_c = true;
  for (size_t i = 0; i < a.size(); ++i) {
    sources.insert(a[i].source);
    same_as_b = same_as_b && a[i].source == b[i].source && a[i].target == b[i].target;
    same_as_c = same_as_c && a[i].source == c[i].source;
    CHECK(data::translate_toy_french(a[i].source) == a[i].target);
  }
  CHECK(same_as_b);
  CHECK_FALSE(same_as_c);
  CHECK(sources.size() == 300);
  CHECK(data::generate_task("toy-french", Split::Test, 0, 5).empty());
}

TEST_CASE("generate_task: the copy and reverse tasks", "[ch08]") {
  for (const std::string task : {"copy", "reverse"}) {
    INFO(task);
    const auto pairs = data::generate_task(task, Split::Train, 500, 3);
    REQUIRE(pairs.size() == 500);
    std::set<std::string> sources;
    std::set<size_t> lengths;
    for (const auto& p : pairs) {
      INFO(p.source << " -> " << p.target);
      sources.insert(p.source);
      std::vector<std::string> src = words(p.source), tgt = words(p.target);
      lengths.insert(src.size());
      CHECK(src.size() >= 3);
      CHECK(src.size() <= 10);
      for (const std::string& d : src) CHECK((d.size() == 1 && d[0] >= '0' && d[0] <= '9'));
      if (task == "reverse") std::reverse(tgt.begin(), tgt.end());
      CHECK(src == tgt);
      CHECK(data::split_of(p.source) == Split::Train);
    }
    CHECK(sources.size() == 500);
    CHECK(lengths.size() == 8);  // every length from 3 to 10 occurs
    // The splits stay apart for these tasks too.
    for (const auto& p : data::generate_task(task, Split::Test, 100, 4)) CHECK(sources.count(p.source) == 0);
  }
  REQUIRE_THROWS_MENTIONING(data::generate_task("spanish", Split::Train, 10, 1), "unknown task 'spanish'");
}

TEST_CASE("generate_task: the streaming form hands out the same examples as they are drawn", "[ch08]") {
  for (const std::string task : {"toy-french", "copy", "reverse"}) {
    INFO(task);
    std::vector<data::SentencePair> streamed;
    data::generate_task(task, Split::Valid, 50, 7, [&](const data::SentencePair& p) { streamed.push_back(p); });
    const auto whole = data::generate_task(task, Split::Valid, 50, 7);
    REQUIRE(streamed.size() == whole.size());
    for (size_t i = 0; i < whole.size(); ++i) {
      CHECK(streamed[i].source == whole[i].source);
      CHECK(streamed[i].target == whole[i].target);
    }
  }
  // The first example arrives before the others are drawn: asking for 10^12
  // and stopping after one returns at once (the whole list would not fit).
  struct Stop {};
  data::SentencePair first;
  try {
    data::generate_task("copy", Split::Train, 1000000000000, 1, [&](const data::SentencePair& p) {
      first = p;
      throw Stop{};
    });
    FAIL("emit was never called");
  } catch (const Stop&) {
  }
  CHECK(first.source == data::generate_task("copy", Split::Train, 1, 1)[0].source);
}

// ---------------------------------------------------------------------------
// Tokenizing and TSV files
// ---------------------------------------------------------------------------

TEST_CASE("tokenize: white space, punctuation split off, ASCII-only case folding", "[ch08]") {
  using V = std::vector<std::string>;
  CHECK(data::tokenize("Hello, world!") == V{"Hello", ",", "world", "!"});
  CHECK(data::tokenize("Hello, world!", true) == V{"hello", ",", "world", "!"});
  CHECK(data::tokenize("a.b,c!d?e;f:g") == V{"a", ".", "b", ",", "c", "!", "d", "?", "e", ";", "f", ":", "g"});
  CHECK(data::tokenize("...") == V{".", ".", "."});
  CHECK(data::tokenize("  many\t\tspaces \r\n and\vtabs\f ") == V{"many", "spaces", "and", "tabs"});
  CHECK(data::tokenize("").empty());
  CHECK(data::tokenize(" \t ").empty());
  // Apostrophes and hyphens stay inside words.
  CHECK(data::tokenize("don't well-known") == V{"don't", "well-known"});
  // Only ASCII letters fold; UTF-8 bytes are left exactly as they were.
  CHECK(data::tokenize("RIVIÈRE École", true) == V{"riviÈre", "École"});
  CHECK(data::tokenize("rivière près", true) == V{"rivière", "près"});
  CHECK(data::tokenize("ABC xyz 123", true) == V{"abc", "xyz", "123"});
  // French typography puts a no-break space (U+00A0) or a narrow no-break
  // space (U+202F) before ? ! : ; and the Tatoeba pairs have both: they
  // separate words like a space and never stay glued to a token.
  CHECK(data::tokenize("Qui\u00a0?") == V{"Qui", "?"});
  CHECK(data::tokenize("Cours\u202f!") == V{"Cours", "!"});
  CHECK(data::tokenize("a\u00a0b\u202fc") == V{"a", "b", "c"});
  // Other characters that share those bytes' lead byte are left alone.
  CHECK(data::tokenize("\u00e0 \u2026") == V{"\u00e0", "\u2026"});
}

TEST_CASE("read_tsv: a good file, blank lines, Windows line endings, lower case", "[ch08]") {
  TempDir dir("ch08_data");
  const std::string path = dir.file("good.tsv");
  write_file(path,
             "Hello, world!\tBonjour, le  monde !\n"
             "\n"
             "   \n"
             "the cat .\tle chat .\r\n"
             "rivière\tRiver\r\n"
             "last line\twithout newline");
  data::TsvSummary summary;
  const auto pairs = data::read_tsv(path, data::TsvOptions{}, &summary);
  REQUIRE(pairs.size() == 4);
  CHECK(pairs[0].source == "Hello , world !");
  CHECK(pairs[0].target == "Bonjour , le monde !");
  CHECK(pairs[1].source == "the cat .");
  CHECK(pairs[1].target == "le chat .");  // no '\r' left over
  CHECK(pairs[2].source == "rivière");
  CHECK(pairs[2].target == "River");
  CHECK(pairs[3].source == "last line");
  CHECK(pairs[3].target == "without newline");
  CHECK(summary.lines == 6);
  CHECK(summary.pairs == 4);
  CHECK(summary.skipped == 0);
  CHECK(summary.first_problem.empty());

  data::TsvOptions lower;
  lower.lowercase = true;
  const auto folded = data::read_tsv(path, lower);  // no summary wanted
  REQUIRE(folded.size() == 4);
  CHECK(folded[0].source == "hello , world !");
  CHECK(folded[2].target == "river");

}

TEST_CASE("read_tsv: a file without a single pair is an error naming the file and why", "[ch08]") {
  TempDir dir("ch08_data");
  data::TsvOptions skip;
  skip.skip_bad_lines = true;
  struct Case {
    std::string name, bytes;
    data::TsvOptions options;
    std::string why;
  };
  const std::vector<Case> cases = {
      {"empty.tsv", "", {}, "the file is empty"},
      {"blank.tsv", "\n   \n\t\n\r\n", {}, "all 4 lines are blank"},
      {"bom_only.tsv", "\xEF\xBB\xBF\n", {}, "all 1 lines are blank"},
      {"all_bad.tsv", "no tab\n\nx\ty\tz\n", skip, "all 2 non-blank lines are bad"},
  };
  for (const Case& c : cases) {
    const std::string path = dir.file(c.name);
    write_file(path, c.bytes);
    const std::string named = path + ": no source<TAB>target pairs";
    REQUIRE_THROWS_MENTIONING(data::read_tsv(path, c.options), named.c_str(), c.why.c_str());
  }
  // The first skipped line is named too, with its line number.
  const std::string first_bad = dir.file("all_bad.tsv") + ":1: ";
  REQUIRE_THROWS_MENTIONING(data::read_tsv(dir.file("all_bad.tsv"), skip), first_bad.c_str());
  REQUIRE_THROWS_MENTIONING(data::read_tsv("/dev/null", data::TsvOptions{}), "/dev/null: no source<TAB>target pairs");
  // A directory is not a text file.
  const std::string directory = dir.path().string();
  REQUIRE_THROWS_MENTIONING(data::read_tsv(directory, data::TsvOptions{}), directory.c_str(), "directory");
}

TEST_CASE("read_tsv: a byte order mark is dropped, CRLF ends a line, a NUL byte is refused with its line", "[ch08]") {
  TempDir dir("ch08_data");
  const std::string path = dir.file("windows.tsv");
  // What Notepad writes: a byte order mark (U+FEFF as UTF-8), then CRLF line ends.
  write_file(path, "\xEF\xBB\xBFthe cat .\tle chat .\r\nthe dog .\tle chien .\r\n");
  const auto pairs = data::read_tsv(path, data::TsvOptions{});
  REQUIRE(pairs.size() == 2);
  CHECK(pairs[0].source == "the cat .");  // not "\ufeffthe cat ."
  CHECK(pairs[0].target == "le chat .");
  CHECK(pairs[1].target == "le chien .");
  // Only the first bytes of the file are a byte order mark: later, U+FEFF is text.
  write_file(path, "a\tb\n\xEF\xBB\xBF" "c\td\n");
  CHECK(data::read_tsv(path, data::TsvOptions{})[1].source == "\xEF\xBB\xBF" "c");

  // A NUL byte would end up inside a word: refused, or skipped and counted.
  write_file(path, std::string("good\tbon\nthe c\0at .\tle chat .\nx\ty\n", 34));
  const std::string where = path + ":2: a NUL byte at byte 6";
  REQUIRE_THROWS_MENTIONING(data::read_tsv(path, data::TsvOptions{}), where.c_str());
  data::TsvOptions skip;
  skip.skip_bad_lines = true;
  data::TsvSummary summary;
  CHECK(data::read_tsv(path, skip, &summary).size() == 2);
  CHECK(summary.skipped == 1);
  CHECK(summary.first_problem == path + ":2: a NUL byte at byte 6");
}

TEST_CASE("read_tsv: each bad line is an error naming FILE:LINE and the problem", "[ch08]") {
  TempDir dir("ch08_data");
  struct Case {
    std::string line, fragment;
  };
  const std::vector<Case> cases = {
      {"no tab here", "tab"},
      {"one\ttwo\tthree", "found 2"},
      {"bad \xff byte\tx", "UTF-8"},
      {"caf\xc3\tcafe", "UTF-8"},                // a truncated 2-byte sequence (the tab is no continuation byte)
      {"x\tcaf\xc3", "UTF-8"},                   // truncated at the end of the line
      {"slash \xc0\xaf\tx", "UTF-8"},            // '/' as an overlong 2-byte form
      {"slash \xe0\x80\xaf\tx", "UTF-8"},        // '/' as an overlong 3-byte form
      {"surrogate \xed\xa0\x80\tx", "UTF-8"},    // U+D800 is not a character
      {"too big \xf4\x90\x80\x80\tx", "UTF-8"},  // U+110000 is past the last code point
      {"lone \x80 continuation\tx", "UTF-8"},
      {"a b c d e\tx", "more than the limit of 4"},
      {"x\ta b c. d", "more than the limit of 4"},  // "c." is two tokens: 5 in all
      {"hello\t", "target is empty"},
      {"\thello", "source is empty"},
      {" , \t  ", "target is empty"},  // the source "," is a token; the target is only spaces
  };
  data::TsvOptions options;
  options.max_tokens = 4;
  for (const Case& c : cases) {
    INFO("line: " << c.line);
    const std::string path = dir.file("bad.tsv");
    // The bad line is line 4, after a good line, a blank line and a good line.
    write_file(path, "good\tbon\n\nfine .\tbien .\n" + c.line + "\nafter\taprès\n");
    const std::string where = path + ":4: ";
    REQUIRE_THROWS_MENTIONING(data::read_tsv(path, options), where.c_str(), c.fragment.c_str());
  }
  // Good UTF-8 of every length passes: 2 bytes (è), 3 bytes (€), 4 bytes (U+1F600).
  write_file(dir.file("utf8.tsv"), "rivière €\t\xf0\x9f\x98\x80\n");
  const auto pairs = data::read_tsv(dir.file("utf8.tsv"), options);
  REQUIRE(pairs.size() == 1);
  CHECK(pairs[0].target == "\xf0\x9f\x98\x80");
}

TEST_CASE("TextLineReader: lines without their ends, a leading BOM dropped, bad lines named", "[ch08]") {
  std::istringstream in(std::string("\xEF\xBB\xBFone\r\ntwo\n\nbad \xff\nnul\0!\r\nlast", 30));
  data::TextLineReader reader(in, "standard input");
  std::string line, problem;
  std::vector<std::string> lines, problems;
  while (reader.next(line, &problem)) {
    lines.push_back(line);
    problems.push_back(problem.empty() ? "" : reader.where() + ": " + problem);
  }
  CHECK(lines == std::vector<std::string>{"one", "two", "", "bad \xff", std::string("nul\0!", 5), "last"});
  CHECK(problems == std::vector<std::string>{"", "", "", "standard input:4: invalid UTF-8 at byte 5",
                                             "standard input:5: a NUL byte at byte 4", ""});
  CHECK(reader.line_number() == 6);

  // Without `problem`, the first bad line is an Error naming the input and the line.
  std::istringstream again("ok\n\xc3\n");
  data::TextLineReader strict(again, "standard input");
  REQUIRE(strict.next(line));
  REQUIRE_THROWS_MENTIONING(strict.next(line), "standard input:2: invalid UTF-8 at byte 1");

  // A file that cannot be opened is named.
  REQUIRE_THROWS_MENTIONING(data::TextLineReader("/nonexistent/in.txt"), "/nonexistent/in.txt: cannot open");

  // Text that comes whole (a command-line argument) is checked the same way.
  CHECK(data::text_line_problem("rivi\xc3\xa8re \xe2\x82\xac \xf0\x9f\x98\x80").empty());
  CHECK(data::text_line_problem("ab\xc0\xaf") == "invalid UTF-8 at byte 3");  // an overlong '/'
  CHECK(data::text_line_problem(std::string("a\0", 2)) == "a NUL byte at byte 2");
}

TEST_CASE("read_tsv: skip_bad_lines counts the bad lines and keeps the good ones", "[ch08]") {
  TempDir dir("ch08_data");
  const std::string path = dir.file("mixed.tsv");
  write_file(path,
             "one\tun\n"          // 1 good
             "no tab\n"           // 2 bad
             "two\tdeux\n"        // 3 good
             "\n"                 // 4 blank
             "x\ty\tz\n"          // 5 bad
             "\xff\tbad\n"        // 6 bad
             "a b c d e f\tg\n"   // 7 bad (too long)
             "empty\t \n"         // 8 bad
             "three\ttrois\r\n");  // 9 good
  data::TsvOptions options;
  options.max_tokens = 5;
  options.skip_bad_lines = true;
  data::TsvSummary summary;
  const auto pairs = data::read_tsv(path, options, &summary);
  REQUIRE(pairs.size() == 3);
  CHECK(pairs[0].source == "one");
  CHECK(pairs[1].target == "deux");
  CHECK(pairs[2].target == "trois");
  CHECK(summary.lines == 9);
  CHECK(summary.pairs == 3);
  CHECK(summary.skipped == 5);
  CHECK(summary.first_problem.rfind(path + ":2: ", 0) == 0);
  CHECK(summary.first_problem.find("tab") != std::string::npos);
  // Without the option, the first bad line stops the reading.
  options.skip_bad_lines = false;
  const std::string where = path + ":2: ";
  REQUIRE_THROWS_MENTIONING(data::read_tsv(path, options), where.c_str());
}

TEST_CASE("read_tsv: a missing file is an error naming it", "[ch08]") {
  TempDir dir("ch08_data");
  const std::string path = dir.file("does_not_exist.tsv");
  REQUIRE_THROWS_MENTIONING(data::read_tsv(path, data::TsvOptions{}), path.c_str());
}

// ---------------------------------------------------------------------------
// Vocabulary
// ---------------------------------------------------------------------------

TEST_CASE("Vocabulary: specials, build order, min_count, unknown words", "[ch08]") {
  const Vocabulary empty;
  REQUIRE(empty.size() == 4);
  CHECK(Vocabulary::kPad == 0);
  CHECK(Vocabulary::kBos == 1);
  CHECK(Vocabulary::kEos == 2);
  CHECK(Vocabulary::kUnk == 3);
  CHECK(empty.token(0) == "<pad>");
  CHECK(empty.token(1) == "<bos>");
  CHECK(empty.token(2) == "<eos>");
  CHECK(empty.token(3) == "<unk>");
  CHECK(empty.id("<eos>") == Vocabulary::kEos);
  CHECK(empty.id("anything") == Vocabulary::kUnk);

  // Counts: a 3, c 2, b 1, d 1, e 1: most frequent first, ties alphabetical.
  const Vocabulary v = Vocabulary::build({"b a c a", "c a d", "e"});
  REQUIRE(v.size() == 9);
  CHECK(v.token(4) == "a");
  CHECK(v.token(5) == "c");
  CHECK(v.token(6) == "b");
  CHECK(v.token(7) == "d");
  CHECK(v.token(8) == "e");
  CHECK(v.id("b") == 6);
  CHECK(v.encode("a zebra c") == std::vector<int64_t>{4, Vocabulary::kUnk, 5});
  CHECK(v.encode("").empty());
  REQUIRE_THROWS_MENTIONING(v.token(9), "out of range");
  REQUIRE_THROWS_MENTIONING(v.token(-1), "out of range");

  // min_count 2 keeps a and c; the rest are unknown.
  const Vocabulary frequent = Vocabulary::build({"b a c a", "c a d", "e"}, 2);
  REQUIRE(frequent.size() == 6);
  CHECK(frequent.encode("a b c d") == std::vector<int64_t>{4, 3, 5, 3});

  // A special token in the data is not added a second time.
  const Vocabulary with_specials = Vocabulary::build({"<unk> x <pad>"});
  CHECK(with_specials.size() == 5);
  CHECK(with_specials.id("x") == 4);
}

TEST_CASE("Vocabulary: decode stops at <eos> and skips <pad> and <bos>", "[ch08]") {
  const Vocabulary v = Vocabulary::build({"le chat noir"});  // chat 4, le 5, noir 6 (all once: alphabetical)
  CHECK(v.decode({Vocabulary::kBos, 5, 4, 6, Vocabulary::kEos, 4, 4}) == "le chat noir");
  CHECK(v.decode({5, Vocabulary::kPad, 4, Vocabulary::kPad}) == "le chat");
  CHECK(v.decode({5, Vocabulary::kUnk}) == "le <unk>");
  CHECK(v.decode({Vocabulary::kEos, 5}).empty());
  CHECK(v.decode({}).empty());
  REQUIRE_THROWS_MENTIONING(v.decode({5, 42}), "out of range");
}

TEST_CASE("Vocabulary: serialize and deserialize round trip; malformed text is refused", "[ch08]") {
  const Vocabulary v = Vocabulary::build({"la rivière près de la ville", "la rive"});
  const std::string text = v.serialize();
  CHECK(text == "<pad>\n<bos>\n<eos>\n<unk>\nla\nde\nprès\nrive\nrivière\nville\n");
  const Vocabulary back = Vocabulary::deserialize(text);
  REQUIRE(back.size() == v.size());
  for (int64_t i = 0; i < v.size(); ++i) {
    CHECK(back.token(i) == v.token(i));
    CHECK(back.id(v.token(i)) == i);
  }
  CHECK(Vocabulary::deserialize("<pad>\n<bos>\n<eos>\n<unk>").size() == 4);  // no final newline is fine

  REQUIRE_THROWS_MENTIONING(Vocabulary::deserialize(""), "malformed", "special tokens are missing");
  REQUIRE_THROWS_MENTIONING(Vocabulary::deserialize("<pad>\n<bos>\n"), "malformed");
  REQUIRE_THROWS_MENTIONING(Vocabulary::deserialize("<pad>\n<eos>\n<bos>\n<unk>\n"), "malformed", "entry 1");
  REQUIRE_THROWS_MENTIONING(Vocabulary::deserialize("<pad>\n<bos>\n<eos>\n<unk>\na\nb\na\n"), "malformed",
                            "'a' appears twice");
  REQUIRE_THROWS_MENTIONING(Vocabulary::deserialize("<pad>\n<bos>\n<eos>\n<unk>\na\n\nb\n"), "malformed", "entry 5");
  REQUIRE_THROWS_MENTIONING(Vocabulary::deserialize("<pad>\n<bos>\n<eos>\n<unk>\na b\n"), "malformed", "white space");
  REQUIRE_THROWS_MENTIONING(Vocabulary::deserialize("<pad>\n<bos>\n<eos>\n<unk>\n<pad>\n"), "malformed", "twice");
}

// ---------------------------------------------------------------------------
// Batches and the masks the model builds from them
// ---------------------------------------------------------------------------

TEST_CASE("TokenSequences: sentences of ids in one flat array", "[ch08]") {
  data::TokenSequences seqs;
  CHECK(seqs.empty());
  seqs.push_back({4, 5, 6});
  seqs.push_back({});
  seqs.push_back({2147483647});  // the largest id an int32 holds
  REQUIRE(seqs.size() == 3);
  CHECK(seqs.length(0) == 3);
  CHECK(seqs.length(1) == 0);
  CHECK(seqs.at(0) == std::vector<int64_t>{4, 5, 6});
  CHECK(seqs.at(1).empty());
  CHECK(seqs.at(2) == std::vector<int64_t>{2147483647});
  CHECK(seqs.begin(0)[2] == 6);
  // From one vector per sentence: the same sequences.
  const data::TokenSequences from_vectors(std::vector<std::vector<int64_t>>{{4, 5, 6}, {}, {2147483647}});
  for (int64_t i = 0; i < 3; ++i) CHECK(from_vectors.at(i) == seqs.at(i));
  REQUIRE_THROWS_MENTIONING(seqs.push_back({1, -3}), "TokenSequences", "-3");
  REQUIRE_THROWS_MENTIONING(seqs.push_back({2147483648}), "TokenSequences", "2147483648");
  CHECK(seqs.size() == 3);  // a refused sequence adds nothing
  REQUIRE_THROWS_MENTIONING(seqs.at(3), "TokenSequences", "sequence 3 of 3");
  REQUIRE_THROWS_MENTIONING(seqs.at(-1), "TokenSequences", "sequence -1");
  seqs.push_back({7});  // and the refused ids are not part of the next one
  CHECK(seqs.at(3) == std::vector<int64_t>{7});
}

TEST_CASE("make_batch: padded source and shifted targets, token counts", "[ch08]") {
  const std::vector<std::vector<int64_t>> sources = {{4, 5, 6}, {7}};
  const std::vector<std::vector<int64_t>> targets = {{8}, {9, 10, 11, 12}};
  const data::Batch batch = data::make_batch(sources, targets, {1, 0});
  // S = 3 + 1 (<eos>), T = 4 + 1 (<bos> in front of tgt_in, <eos> after tgt_out).
  REQUIRE(batch.src.dtype() == attend::DType::Int64);
  REQUIRE(batch.tgt_in.dtype() == attend::DType::Int64);
  REQUIRE(batch.tgt_out.dtype() == attend::DType::Int64);
  REQUIRE(batch.src.shape() == Shape{2, 4});
  REQUIRE(batch.tgt_in.shape() == Shape{2, 5});
  REQUIRE(batch.tgt_out.shape() == Shape{2, 5});
  CHECK(batch.src.to_index_vector() == std::vector<int64_t>{7, 2, 0, 0,  //
                                                            4, 5, 6, 2});
  CHECK(batch.tgt_in.to_index_vector() == std::vector<int64_t>{1, 9, 10, 11, 12,  //
                                                               1, 8, 0, 0, 0});
  CHECK(batch.tgt_out.to_index_vector() == std::vector<int64_t>{9, 10, 11, 12, 2,  //
                                                                8, 2, 0, 0, 0});
  CHECK(batch.indices == std::vector<int64_t>{1, 0});
  CHECK(batch.source_tokens == 2 + 4);  // ids + <eos> of each row
  CHECK(batch.target_tokens == 5 + 2);

  // An empty source or target is just <eos> (and <bos> on the way in).
  const data::Batch tiny = data::make_batch({{}}, {{}}, {0});
  CHECK(tiny.src.to_index_vector() == std::vector<int64_t>{2});
  CHECK(tiny.tgt_in.to_index_vector() == std::vector<int64_t>{1});
  CHECK(tiny.tgt_out.to_index_vector() == std::vector<int64_t>{2});

  REQUIRE_THROWS_MENTIONING(data::make_batch(sources, targets, {}), "make_batch", "no examples");
  REQUIRE_THROWS_MENTIONING(data::make_batch(sources, targets, {0, 2}), "make_batch", "example 2");
  REQUIRE_THROWS_MENTIONING(data::make_batch(sources, targets, {-1}), "make_batch", "example -1");
}

TEST_CASE("make_batch: the masks the model needs from a padded batch", "[ch08]") {
  const data::Batch batch = data::make_batch({{4, 5, 6}, {7}}, {{8}, {9, 10, 11, 12}}, {1, 0});
  // Encoder (and cross-attention) keys: 1 exactly at padding, not at <eos>.
  const Tensor src_mask = attend::nn::padding_mask(batch.src, Vocabulary::kPad);
  REQUIRE(src_mask.shape() == Shape{2, 1, 1, 4});
  CHECK(src_mask.to_vector() == std::vector<float>{0, 0, 1, 1,  //
                                                   0, 0, 0, 0});
  // Decoder self-attention: no future position, no padding key.
  const Tensor tgt_mask = attend::nn::combine_masks(attend::nn::padding_mask(batch.tgt_in, Vocabulary::kPad),
                                                attend::nn::causal_mask(batch.tgt_in.size(1)));
  REQUIRE(tgt_mask.shape() == Shape{2, 1, 5, 5});
  // Row 0 (tgt_in 1 9 10 11 12, no padding): only the causal part.
  // Row 1 (tgt_in 1 8 0 0 0): keys 2..4 are padding for every query.
  const std::vector<float> expected = {
      0, 1, 1, 1, 1,  //
      0, 0, 1, 1, 1,  //
      0, 0, 0, 1, 1,  //
      0, 0, 0, 0, 1,  //
      0, 0, 0, 0, 0,  //

      0, 1, 1, 1, 1,  //
      0, 0, 1, 1, 1,  //
      0, 0, 1, 1, 1,  //
      0, 0, 1, 1, 1,  //
      0, 0, 1, 1, 1,  //
  };
  CHECK(tgt_mask.to_vector() == expected);
  // Every real query keeps at least its own position (it is never all masked).
  const std::vector<int64_t> tgt_in = batch.tgt_in.to_index_vector();
  for (int64_t b = 0; b < 2; ++b) {
    for (int64_t q = 0; q < 5; ++q) {
      if (tgt_in[static_cast<size_t>(b * 5 + q)] != Vocabulary::kPad) CHECK(tgt_mask.at({b, 0, q, q}) == 0.0f);
    }
  }
}

namespace {

// Padding (source + target) the batches of `groups` need.
int64_t padding_of(const std::vector<std::vector<int64_t>>& groups, const std::vector<std::vector<int64_t>>& sources,
                   const std::vector<std::vector<int64_t>>& targets) {
  int64_t padding = 0;
  for (const auto& g : groups) {
    const data::Batch b = data::make_batch(sources, targets, g);
    padding += b.src.numel() - b.source_tokens + b.tgt_out.numel() - b.target_tokens;
  }
  return padding;
}

}  // namespace

TEST_CASE("bucketed_batches: every example once, batch sizes, little padding, deterministic", "[ch08]") {
  // 1000 examples, sources 1..40 tokens, targets a little longer.
  Generator data_gen(3);
  std::vector<std::vector<int64_t>> sources, targets;
  for (int i = 0; i < 1000; ++i) {
    const int64_t length = 1 + data_gen.randint(40);
    sources.emplace_back(static_cast<size_t>(length), 4);
    targets.emplace_back(static_cast<size_t>(length + data_gen.randint(4)), 5);
  }
  const int64_t batch_size = 16;
  Generator gen(5);
  const auto batches = data::bucketed_batches(sources, targets, batch_size, gen);

  std::vector<int> seen(1000, 0);
  int64_t short_batches = 0;
  for (const auto& b : batches) {
    REQUIRE(!b.empty());
    CHECK(static_cast<int64_t>(b.size()) <= batch_size);
    short_batches += static_cast<int64_t>(b.size()) < batch_size ? 1 : 0;
    for (int64_t i : b) {
      REQUIRE(i >= 0);
      REQUIRE(i < 1000);
      ++seen[static_cast<size_t>(i)];
    }
  }
  CHECK(std::all_of(seen.begin(), seen.end(), [](int c) { return c == 1; }));
  // Batches are full but for the odd remainder (1000 = 62 * 16 + 8).
  CHECK(short_batches <= 2);
  CHECK(batches.size() <= 1000 / 16 + 2);

  // Random batching (shuffle, cut) on the same data needs far more padding.
  std::vector<int64_t> order(1000);
  for (int64_t i = 0; i < 1000; ++i) order[static_cast<size_t>(i)] = i;
  Generator shuffle_gen(5);
  for (int64_t i = 999; i > 0; --i) std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(shuffle_gen.randint(i + 1))]);
  std::vector<std::vector<int64_t>> random_batches;
  for (size_t s = 0; s < order.size(); s += batch_size) {
    random_batches.emplace_back(order.begin() + static_cast<std::ptrdiff_t>(s),
                                order.begin() + static_cast<std::ptrdiff_t>(std::min(order.size(), s + batch_size)));
  }
  const int64_t bucketed_padding = padding_of(batches, sources, targets);
  const int64_t random_padding = padding_of(random_batches, sources, targets);
  INFO("padding: bucketed " << bucketed_padding << ", random " << random_padding);
  CHECK(bucketed_padding * 5 < random_padding);

  // The same generator state gives the same batches (and leaves the same state);
  // the next epoch from the same generator is shuffled differently.
  Generator again(5);
  CHECK(data::bucketed_batches(sources, targets, batch_size, again) == batches);
  CHECK(again.state() == gen.state());
  CHECK(data::bucketed_batches(sources, targets, batch_size, again) != batches);
  Generator other(6);
  CHECK(data::bucketed_batches(sources, targets, batch_size, other) != batches);

  CHECK(data::bucketed_batches({}, {}, 4, gen).empty());
  REQUIRE_THROWS_MENTIONING(data::bucketed_batches(sources, targets, 0, gen), "batch_size");
}

// ---------------------------------------------------------------------------
// BLEU and exact match, worked by hand
// ---------------------------------------------------------------------------

TEST_CASE("fnv1a is the standard 64-bit FNV-1a and can be continued", "[ch08]") {
  CHECK(data::fnv1a("") == 0xcbf29ce484222325ull);  // the offset basis
  CHECK(data::fnv1a("a") == 0xaf63dc4c8601ec8cull);
  CHECK(data::fnv1a("foobar") == 0x85944171f73967e8ull);
  CHECK(data::fnv1a("bar", data::fnv1a("foo")) == data::fnv1a("foobar"));
}

TEST_CASE("corpus_bleu: an identical corpus scores 100", "[ch08]") {
  const train::BleuResult r =
      train::corpus_bleu({"the cat sat on the mat", "a b c d e"}, {{"the cat sat on the mat"}, {"a b c d e"}});
  CHECK_NEAR(r.score, 100.0, 1e-9);
  for (double p : r.precisions) CHECK_NEAR(p, 100.0, 1e-9);
  CHECK(r.brevity_penalty == 1.0);
  CHECK(r.hypothesis_length == 11);
  CHECK(r.reference_length == 11);
}

TEST_CASE("corpus_bleu: partial matches, worked by hand", "[ch08]") {
  // hypothesis "the cat sat on the mat", reference "the cat sat on a mat":
  //   1-grams: the x2 (clipped to 1, the reference has one), cat, sat, on, mat -> 5 / 6
  //   2-grams: the cat, cat sat, sat on match; on the, the mat do not      -> 3 / 5
  //   3-grams: the cat sat, cat sat on match; sat on the, on the mat do not -> 2 / 4
  //   4-grams: the cat sat on matches; cat sat on the, sat on the mat not   -> 1 / 3
  //   lengths 6 and 6: brevity penalty 1
  //   BLEU = (5/6 * 3/5 * 2/4 * 1/3)^(1/4) = (1/12)^(1/4) = 0.5372850 -> 53.72850
  const train::BleuResult one = train::corpus_bleu({"the cat sat on the mat"}, {{"the cat sat on a mat"}});
  CHECK_NEAR(one.precisions[0], 100.0 * 5 / 6, 1e-9);
  CHECK_NEAR(one.precisions[1], 100.0 * 3 / 5, 1e-9);
  CHECK_NEAR(one.precisions[2], 100.0 * 2 / 4, 1e-9);
  CHECK_NEAR(one.precisions[3], 100.0 * 1 / 3, 1e-9);
  CHECK(one.brevity_penalty == 1.0);
  CHECK_NEAR(one.score, 53.7284966, 1e-6);

  // The brevity penalty alone: "the cat sat on" against "the cat sat on the mat":
  //   every n-gram matches (4/4, 3/3, 2/2, 1/1), but 4 < 6 tokens:
  //   BP = exp(1 - 6/4) = exp(-0.5) = 0.6065307 -> BLEU 60.65307
  const train::BleuResult short_one = train::corpus_bleu({"the cat sat on"}, {{"the cat sat on the mat"}});
  for (double p : short_one.precisions) CHECK_NEAR(p, 100.0, 1e-9);
  CHECK_NEAR(short_one.brevity_penalty, 0.6065307, 1e-6);
  CHECK_NEAR(short_one.score, 60.6530660, 1e-6);
  CHECK(short_one.hypothesis_length == 4);
  CHECK(short_one.reference_length == 6);

  // Both as one corpus: counts add up over sentences (this is not the mean of
  // the sentence scores):
  //   1-grams (5 + 4) / (6 + 4) = 9/10, 2-grams (3 + 3) / (5 + 3) = 6/8,
  //   3-grams (2 + 2) / (4 + 2) = 4/6, 4-grams (1 + 1) / (3 + 1) = 2/4;
  //   lengths 10 and 12: BP = exp(1 - 12/10) = exp(-0.2) = 0.8187308;
  //   BLEU = 0.8187308 * (0.9 * 0.75 * 0.6667 * 0.5)^(1/4) = 0.8187308 * 0.6887246 = 0.5638801
  const train::BleuResult corpus = train::corpus_bleu({"the cat sat on the mat", "the cat sat on"},
                                                          {{"the cat sat on a mat"}, {"the cat sat on the mat"}});
  CHECK_NEAR(corpus.precisions[0], 90.0, 1e-9);
  CHECK_NEAR(corpus.precisions[1], 75.0, 1e-9);
  CHECK_NEAR(corpus.precisions[2], 100.0 * 4 / 6, 1e-9);
  CHECK_NEAR(corpus.precisions[3], 50.0, 1e-9);
  CHECK_NEAR(corpus.brevity_penalty, 0.8187308, 1e-6);
  CHECK_NEAR(corpus.score, 56.3880055, 1e-6);
  CHECK(corpus.hypothesis_length == 10);
  CHECK(corpus.reference_length == 12);
}

TEST_CASE("corpus_bleu: clipping and sacrebleu's exp smoothing", "[ch08]") {
  // "the the the the" against "the cat":
  //   1-grams: "the" 4 times, clipped to the reference's 1          -> 1 / 4 = 25
  //   2-grams: "the the" x3, no match: 1st order without a match,
  //            smoothed to 100 / (2^1 * 3)                            = 16.6667
  //   3-grams: "the the the" x2, none: 100 / (2^2 * 2)                = 12.5
  //   4-grams: "the the the the" x1, none: 100 / (2^3 * 1)            = 12.5
  //   4 tokens >= 2: BP 1
  //   BLEU = (25 * 16.6667 * 12.5 * 12.5)^(1/4) = 65104.17^(1/4) = 15.97358
  const train::BleuResult r = train::corpus_bleu({"the the the the"}, {{"the cat"}});
  CHECK_NEAR(r.precisions[0], 25.0, 1e-9);
  CHECK_NEAR(r.precisions[1], 100.0 / 6, 1e-9);
  CHECK_NEAR(r.precisions[2], 12.5, 1e-9);
  CHECK_NEAR(r.precisions[3], 12.5, 1e-9);
  CHECK(r.brevity_penalty == 1.0);
  CHECK_NEAR(r.score, 15.9735776, 1e-6);

  // The smoothing factor counts only the orders without a match: "a cat
  // sat on the mat" against "the cat sat on a mat":
  //   1-grams: a, cat, sat, on, the, mat all match                     -> 6 / 6 = 100
  //   2-grams: cat sat, sat on match; a cat, on the, the mat do not    -> 2 / 5 = 40
  //   3-grams: cat sat on matches; a cat sat, sat on the, on the mat not -> 1 / 4 = 25
  //   4-grams: none of 3 -> the first order without a match: 100 / (2^1 * 3) = 16.6667
  //   BLEU = (100 * 40 * 25 * 16.6667)^(1/4) = 1666666.7^(1/4) = 35.93041
  const train::BleuResult s = train::corpus_bleu({"a cat sat on the mat"}, {{"the cat sat on a mat"}});
  CHECK_NEAR(s.precisions[0], 100.0, 1e-9);
  CHECK_NEAR(s.precisions[1], 40.0, 1e-9);
  CHECK_NEAR(s.precisions[2], 25.0, 1e-9);
  CHECK_NEAR(s.precisions[3], 100.0 / 6, 1e-9);
  CHECK_NEAR(s.score, 35.9304112, 1e-6);

  // Nothing in common: every order smoothed, 100/(2*6), 100/(4*5), 100/(8*4),
  // 100/(16*3): (8.3333 * 5 * 3.125 * 2.0833)^(1/4) = 271.27^(1/4) = 4.058349.
  const train::BleuResult none = train::corpus_bleu({"u v w x y z"}, {{"the cat sat on a mat"}});
  CHECK_NEAR(none.precisions[0], 100.0 / 12, 1e-9);
  CHECK_NEAR(none.precisions[1], 100.0 / 20, 1e-9);
  CHECK_NEAR(none.precisions[2], 100.0 / 32, 1e-9);
  CHECK_NEAR(none.precisions[3], 100.0 / 48, 1e-9);
  CHECK_NEAR(none.score, std::pow(100.0 / 12 * 100.0 / 20 * 100.0 / 32 * 100.0 / 48, 0.25), 1e-9);
  CHECK_NEAR(none.score, 4.0583489, 1e-6);
}

TEST_CASE("corpus_bleu: several references", "[ch08]") {
  // "the the the cat" against "the cat" and "the the mat":
  //   1-grams: "the" x3 is clipped by the most any ONE reference has (2,
  //            not 1 + 2 = 3), cat 1                                   -> 3 / 4 = 75
  //   2-grams: "the the" x2 clipped to 1, "the cat" 1                  -> 2 / 3 = 66.667
  //   3-grams: "the the the", "the the cat": no match: 100 / (2 * 2)   = 25
  //   4-grams: "the the the cat": no match: 100 / (4 * 1)              = 25
  //   reference lengths 2 and 3: the closest to 4 is 3; 4 >= 3: BP 1
  //   BLEU = (75 * 66.667 * 25 * 25)^(1/4) = 3125000^(1/4) = 42.04482
  const train::BleuResult r = train::corpus_bleu({"the the the cat"}, {{"the cat", "the the mat"}});
  CHECK_NEAR(r.precisions[0], 75.0, 1e-9);
  CHECK_NEAR(r.precisions[1], 200.0 / 3, 1e-9);
  CHECK_NEAR(r.precisions[2], 25.0, 1e-9);
  CHECK_NEAR(r.precisions[3], 25.0, 1e-9);
  CHECK(r.reference_length == 3);
  CHECK(r.brevity_penalty == 1.0);
  CHECK_NEAR(r.score, 42.0448208, 1e-6);

  // The closest reference length, the shorter on a tie: "a b c d" (4) against
  // lengths 3 and 5 (both 1 away) takes 3, so there is no brevity penalty;
  // every n-gram is in the second reference: BLEU 100. (Taking 5 would give
  // BP = exp(1 - 5/4) = 0.7788.)
  const train::BleuResult tie = train::corpus_bleu({"a b c d"}, {{"a b c d e", "a b c"}});
  CHECK(tie.reference_length == 3);
  CHECK(tie.brevity_penalty == 1.0);
  CHECK_NEAR(tie.score, 100.0, 1e-9);
  // Not a tie: "a b c d" against lengths 7 and 6 takes 6: BP = exp(1 - 6/4) = 0.6065307.
  const train::BleuResult closest = train::corpus_bleu({"a b c d"}, {{"a b c d e f g", "a b c d x y"}});
  CHECK(closest.reference_length == 6);
  CHECK_NEAR(closest.brevity_penalty, 0.6065307, 1e-6);
  CHECK_NEAR(closest.score, 60.6530660, 1e-6);
}

TEST_CASE("corpus_bleu: empty and short hypotheses, errors", "[ch08]") {
  // An empty hypothesis: no n-grams at all, length 0: BLEU 0 and BP 0.
  const train::BleuResult empty = train::corpus_bleu({""}, {{"the cat"}});
  CHECK(empty.score == 0.0);
  CHECK(empty.brevity_penalty == 0.0);
  CHECK(empty.hypothesis_length == 0);
  CHECK(empty.reference_length == 2);
  // A 2-token hypothesis has no 3- or 4-grams: those precisions are 0 (not
  // smoothed: there is nothing to count) and the corpus BLEU is 0, as in
  // sacrebleu without effective order.
  const train::BleuResult two = train::corpus_bleu({"the cat"}, {{"the cat"}});
  CHECK_NEAR(two.precisions[0], 100.0, 1e-9);
  CHECK_NEAR(two.precisions[1], 100.0, 1e-9);
  CHECK(two.precisions[2] == 0.0);
  CHECK(two.precisions[3] == 0.0);
  CHECK(two.score == 0.0);
  // An empty hypothesis next to a perfect one only adds to the reference
  // length: precisions 100, BP = exp(1 - (2 + 6)/6) = exp(-1/3) = 0.7165313.
  const train::BleuResult mixed =
      train::corpus_bleu({"", "the cat sat on the mat"}, {{"a b"}, {"the cat sat on the mat"}});
  for (double p : mixed.precisions) CHECK_NEAR(p, 100.0, 1e-9);
  CHECK_NEAR(mixed.brevity_penalty, 0.7165313, 1e-6);
  CHECK_NEAR(mixed.score, 71.6531311, 1e-6);
  // An empty corpus scores 0.
  CHECK(train::corpus_bleu({}, {}).score == 0.0);

  REQUIRE_THROWS_MENTIONING(train::corpus_bleu({"a", "b"}, {{"a"}}), "corpus_bleu", "2 hypotheses but 1");
  REQUIRE_THROWS_MENTIONING(train::corpus_bleu({"a"}, {{}}), "corpus_bleu", "no reference");
}

TEST_CASE("exact_match: a hypothesis counts when it equals any of its references", "[ch08]") {
  CHECK(train::exact_match({"le chat .", "la maison .", "un chien ."},
                             {{"le chat ."}, {"une maison .", "la maison ."}, {"le chien .", "des chiens ."}}) ==
        2.0 / 3.0);
  CHECK(train::exact_match({"le chat ."}, {{"le chat"}}) == 0.0);  // a missing token is a miss
  CHECK(train::exact_match({"a", "b"}, {{"a"}, {"b"}}) == 1.0);
  CHECK(train::exact_match({""}, {{""}}) == 1.0);
  CHECK(train::exact_match({}, {}) == 0.0);
  REQUIRE_THROWS_MENTIONING(train::exact_match({"a"}, {}), "exact_match", "1 hypotheses but 0");
}
