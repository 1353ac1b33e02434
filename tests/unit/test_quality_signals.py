"""Each signal on an answer it must pass and one it must flag."""

from __future__ import annotations

import json

import pytest

from policies.quality import signals as sg

Q_MATHS = "Tom buys 3 boxes of 12 eggs and breaks 4. How many eggs does he have left?"


def test_empty_answer() -> None:
    assert sg.empty_answer("  \n ...").value == 0.0
    assert sg.empty_answer("Paris.").value == 1.0
    assert sg.empty_answer("", tool_calls=[{"function": {"name": "f", "arguments": "{}"}}]).value == 1.0


def test_cut_off() -> None:
    assert sg.cut_off("length").value == 0.0
    assert sg.cut_off("stop").value == 1.0
    assert sg.cut_off(None).value == 1.0


@pytest.mark.parametrize(
    "text",
    ["Here is the code:\n```python\nprint(1)", "The total is 15 + <<15+2", "We add the numbers and", "It was 130,00"],
)
def test_abrupt_end_flags_cut_text(text: str) -> None:
    assert sg.abrupt_end(text).value < 0.5


def test_abrupt_end_passes_finished_text() -> None:
    assert sg.abrupt_end("The answer is 42.\n```py\nx = 1\n```\nDone (really).").value == 1.0


def test_repetition_loop() -> None:
    loop = "I like to play football with my friends. " * 12
    assert sg.repetition(loop).value == 0.0
    prose = (
        "Photosynthesis converts light energy into chemical energy. Plants absorb sunlight with chlorophyll, "
        "take in carbon dioxide through their leaves and water through their roots, and produce glucose and "
        "oxygen. The glucose fuels growth while oxygen is released into the air."
    )
    assert sg.repetition(prose).value == 1.0
    assert sg.repetition("!" * 300).value == 0.0


def test_refusal_unwarranted_vs_warranted() -> None:
    assert sg.refusal("What is the capital of France?", "I'm sorry, but I can't help with that.").value == 0.0
    assert sg.refusal("How do I build a bomb?", "I'm sorry, but I can't help with that.").value == 1.0
    assert sg.refusal("What is the capital of France?", "The capital of France is Paris.").value == 1.0
    assert sg.refusal("I have a cold, any tips?", "I'm sorry to hear that! Rest and drink fluids.").value == 1.0


def test_language_mismatch() -> None:
    q = "What are the main causes of the French revolution and how did it end?"
    assert (
        sg.language_match(
            q, "Die Revolution hatte viele Ursachen, und sie ist mit dem Aufstieg Napoleons zu Ende gegangen."
        ).value
        < 0.5
    )
    assert sg.language_match(q, "Революция имела много причин и закончилась приходом Наполеона.").value == 0.0
    assert sg.language_match(q, "It had many causes, and it ended with the rise of Napoleon to power.").value == 1.0
    # Asked for another language: not a mismatch.
    assert (
        sg.language_match(
            "Translate into German: the house is big and old", "Das Haus ist groß und alt, und es ist schön."
        ).value
        == 1.0
    )


def test_json_valid() -> None:
    req = {"response_format": {"type": "json_object"}}
    assert sg.json_valid(req, '{"a": 1}').value == 1.0
    assert sg.json_valid(req, "Sure! {a: 1}").value == 0.0
    assert sg.json_valid({}, "not json at all").value == 1.0
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "required": ["name"]}}}
    assert sg.json_valid({"response_format": schema}, '{"age": 3}').value == 0.0
    assert sg.json_valid({"response_format": schema}, '{"name": "Ann"}').value == 1.0


def test_tool_args_valid() -> None:
    req = {"tools": [{"type": "function", "function": {"name": "weather", "parameters": {"required": ["city"]}}}]}

    def call(name: str, args: str) -> list[dict]:
        return [{"id": "c1", "type": "function", "function": {"name": name, "arguments": args}}]

    assert sg.tool_args_valid(req, call("weather", json.dumps({"city": "Oslo"}))).value == 1.0
    assert sg.tool_args_valid(req, call("weather", '{"city": "Oslo"')).value == 0.0
    assert sg.tool_args_valid(req, call("weather", "{}")).value == 0.0
    assert sg.tool_args_valid(req, call("stocks", '{"city": "Oslo"}')).value == 0.0
    assert sg.tool_args_valid(req, None).value == 1.0


def test_tool_args_valid_anthropic_shapes() -> None:
    # /v1/messages: tools offered as {name, input_schema}, called with tool_use blocks whose input is an object
    # (or the JSON text a stream's input_json_delta fragments add up to).
    req = {
        "tools": [
            {"name": "weather", "description": "d", "input_schema": {"type": "object", "required": ["city"]}},
            {"type": "web_search_20250305", "name": "web_search"},
        ]
    }

    def use(name: str, args: object) -> list[dict]:
        return [{"type": "tool_use", "id": "toolu_1", "name": name, "input": args}]

    assert sg.tool_args_valid(req, use("weather", {"city": "Oslo"})).value == 1.0
    assert sg.tool_args_valid(req, use("weather", '{"city": "Oslo"}')).value == 1.0
    assert sg.tool_args_valid(req, use("web_search", {"query": "Oslo"})).value == 1.0
    assert "lacks required" in sg.tool_args_valid(req, use("weather", {})).reason
    assert "do not parse" in sg.tool_args_valid(req, use("weather", '{"city": ')).reason
    assert "unknown tool" in sg.tool_args_valid(req, use("stocks", {"city": "Oslo"})).reason


def test_logprob_mean_and_min() -> None:
    assert sg.logprob_mean([-0.1, -0.3, -0.2]).value == 1.0
    assert sg.logprob_mean([-3.0, -4.0, -2.8]).value == 0.0
    assert sg.logprob_mean(None).value == 1.0
    confident = [-0.2] * 20
    assert sg.logprob_min(confident).value == 1.0
    assert sg.logprob_min(confident[:10] + [-8.0, -9.0, -7.5, -8.5] + confident[:6]).value == 0.0


def test_relevance_ramp() -> None:
    assert sg.relevance(0.6).value == 1.0
    assert sg.relevance(0.0).value == 0.0
    assert sg.relevance(None).value == 1.0


def test_lexical_overlap() -> None:
    q = "Explain how photosynthesis works in green plants"
    assert sg.lexical_overlap(q, "Photosynthesis in plants works by turning light into sugar.") >= 0.5
    assert sg.lexical_overlap(q, "Bananas are yellow.") == 0.0
    assert sg.lexical_overlap("Hi?", "Hello!") is None


@pytest.mark.parametrize(
    "expr,value", [("12 * 3", 36), ("(5 + 3) x 2", 16), ("$1,200 / 4", 300), ("20% * 50", 10), ("2 \\* 7", 14)]
)
def test_eval_arithmetic(expr: str, value: float) -> None:
    assert sg.eval_arithmetic(expr) == pytest.approx(value)


def test_eval_arithmetic_rejects_non_expressions() -> None:
    assert sg.eval_arithmetic("__import__('os')") is None
    assert sg.eval_arithmetic("3 apples") is None


def test_arithmetic_flags_wrong_step_only() -> None:
    right = "He buys 3 * 12 = 36 eggs. He has 36 - 4 = <<36-4=32>>32 left.\n#### 32"
    wrong = "He buys 3 * 12 = 38 eggs. He has 38 - 4 = 34 left.\n#### 34"
    assert sg.arithmetic(right).value == 1.0
    bad = sg.arithmetic(wrong)
    assert bad.value < 0.5 and "3 * 12 = 38" in bad.reason
    # Algebra is not arithmetic: "x * 4 + 8 = 40" is an equation to solve.
    assert sg.arithmetic("We have x * 4 + 8 = 40, so x = 8.").value == 1.0
    # A percent written as such, and a count rounded up, are not errors.
    assert sg.arithmetic("That is 0.1 * 100 = 10% of it; 73 / 8 = 9 boxes.").value == 1.0


def test_maths_answer_final_number() -> None:
    assert sg.maths_answer(Q_MATHS, "He has 3 * 12 = 36 eggs, and 36 - 4 = 32 are left.\nHe has 32 eggs.").value == 1.0
    assert sg.maths_answer(Q_MATHS, "He has 3 * 12 = 36 eggs.\nThen some break, so fewer remain.").value < 1.0
    assert sg.maths_answer(Q_MATHS, "36 / 4 = 9.5\nSo 9.5 eggs.").value < 1.0
    assert sg.maths_answer(Q_MATHS, "He has 3 * 12 = 36 eggs and 36 - 4 = 32 left.\n#### 40").value < 1.0
    assert sg.maths_answer(Q_MATHS, "He has 32 eggs left.").value < 1.0  # no worked calculation
    # Not a maths question: the check does not apply.
    assert sg.maths_answer("Who wrote Hamlet?", "Shakespeare wrote it around 1600").value == 1.0


@pytest.mark.parametrize(
    "question",
    [
        # numbers spelled out ("four", "three times", "half")
        "Greg's alarm rang four times the first time. The second time it rang three times as long, and the third "
        "time half as long as the second. How many times did it ring in all?",
        # a decimal written without its leading zero
        "John walks each of his 10 dogs for .5 hours a day. How many hours a week does he spend walking them?",
        # quantity asks the earlier list missed
        "A shirt costs $20 and is 25% off today. What is the new price of the shirt?",
        "Of the 40 students in a class, 12 walk to school. What percentage of the students walk to school?",
        "Ann is 5 feet tall and her tree is twice as tall as she is. How tall is the tree?",
    ],
    ids=["spelled", "bare-decimal", "new-price", "percentage", "how-tall"],
)
def test_word_problems_phrased_every_way_are_maths_questions(question: str) -> None:
    assert sg.is_maths_question(question)
    assert sg.maths_answer(question, "I am not sure.").value < 1.0  # the maths checks now apply


@pytest.mark.parametrize(
    "question",
    [
        "What is 17 times 23?",  # a bare calculation: the `computation` rule's case, not a word problem
        "Who wrote Hamlet?",
        "Explain in two sentences why the sky is blue.",  # numbers but no quantity asked
        "What is the capital of France? Name one other city there.",  # one number word only
    ],
)
def test_other_questions_are_not_maths_questions(question: str) -> None:
    assert not sg.is_maths_question(question)


Q_FRUIT = "Kira bought 3 apples, 5 bananas and 6 oranges. Lola ate 2 pieces of the fruit. How many pieces are left?"


@pytest.mark.parametrize(
    "answer",
    [
        "Lola ate an unknown number of fruits, so we cannot directly find the number of fruits left. If we knew which "
        "fruit she ate, we could subtract it: for example, if Lola ate 1 apple, then 2 apples are left.",
        "Let a be the apples left, so a + 5 + 6 = 14 - 2. There is a mistake in the problem statement, and it is not "
        "possible to determine how many pieces are left with the given information.",
        "There is not enough information to answer: it depends on which fruit she ate.",
    ],
    ids=["cannot-find", "not-possible", "not-enough-information"],
)
def test_maths_answer_flags_a_word_problem_answered_without_a_result(answer: str) -> None:
    v = sg.maths_answer(Q_FRUIT, answer)
    assert v.value <= 0.3 and "without a result" in v.reason


def test_a_doubt_resolved_into_a_stated_result_is_not_an_abstention() -> None:
    answer = (
        "We cannot find the answer by counting one fruit type alone, so add them: 3 + 5 + 6 = 14, 14 - 2 = 12.\n#### 12"
    )
    assert sg.maths_answer(Q_FRUIT, answer) == sg.OK


def test_maths_inputs_unused_numbers() -> None:
    assert sg.maths_inputs(Q_MATHS, "3 * 12 = 36, and 36 - 4 = 32.\n#### 32").value == 1.0
    assert sg.maths_inputs(Q_MATHS, "12 + 12 = 24\n#### 24").value < 1.0


def test_dead_end_flags_a_result_nothing_uses() -> None:
    sound = "He buys 3 * 12 = <<3*12=36>>36 eggs.\nHe has 36 - 4 = <<36-4=32>>32 left.\n#### 32"
    # 36 is worked out, then the answer goes on from 12 instead: the working lost a link.
    lost = "He buys 3 * 12 = 36 eggs.\nHe breaks 4, so 12 - 4 = 8 are left.\n#### 8"
    assert sg.dead_end(Q_MATHS, sound).value == 1.0
    bad = sg.dead_end(Q_MATHS, lost)
    assert bad.value == 0.0 and "36" in bad.reason
    # A result used later in a plain-text calculation ("x" as times) is not a dead end.
    assert (
        sg.dead_end(Q_MATHS, "3 x 12 = 36 eggs in all.\nHe is left with 36 - 4 = 32.\nSo 32 x 1 = 32 eggs.").value
        == 1.0
    )
    # A result equal to the final answer is not a dead end, nor is a single calculation.
    assert sg.dead_end(Q_MATHS, "36 - 4 = 32 eggs; 3 * 12 - 4 = 32 as well.\n#### 32").value == 1.0
    assert sg.dead_end(Q_MATHS, "3 * 12 - 4 = 32\n#### 32").value == 1.0


def test_equations_in_reading_order() -> None:
    text = "First 2 + 3 = 5 apples.\nThen <<5*2=10>>10 pears, and 10 - 1 = 9 left."
    assert sg.equations(text) == [("2 + 3", "5"), ("5*2", "10"), ("10 - 1", "9")]
    assert [v for _, v in sg.worked_results(text)] == [5, 10, 9]


# Good chat answers that carry numbers, lists, code or formulas: no maths or hedging signal may fire.
PROSE = [
    (
        "Who was Napoleon and when did he rule France?",
        "Napoleon Bonaparte was a French military leader who ruled France as First Consul from 1799 and as "
        "Emperor from 1804 to 1814, and again for 100 days in 1815 before his defeat at Waterloo.",
    ),
    (
        "How do I convert Celsius to Fahrenheit?",
        "Multiply by 9/5 and add 32: F = C * 9/5 + 32. For example 100 * 9/5 + 32 = 212, and 0 degrees gives 32.",
    ),
    (
        "Give me a simple pancake recipe.",
        "1. Whisk 2 eggs with 250 ml of milk.\n2. Add 200 g of flour and a pinch of salt.\n3. Fry each pancake "
        "for 1-2 minutes per side in a hot, buttered pan.",
    ),
    (
        "What does this Python do: print(sum(range(10)))?",
        "It prints 45: `range(10)` yields 0 to 9 and `sum` adds them, 0 + 1 + ... + 9 = 45.",
    ),
    (
        "Suggest three things to do in Rome with 2 days and a budget of 300 euros.",
        "Visit the Colosseum and the Forum (about 18 euros), walk from the Pantheon to the Trevi Fountain, "
        "and spend an afternoon in Trastevere. That leaves most of the 300 euros for food and transport.",
    ),
]


@pytest.mark.parametrize("question,answer", PROSE, ids=["history", "formula", "recipe", "code", "travel"])
def test_task_checks_stay_silent_on_good_prose(question: str, answer: str) -> None:
    for sig in (
        sg.arithmetic(answer),
        sg.maths_answer(question, answer),
        sg.maths_inputs(question, answer),
        sg.dead_end(question, answer),
        sg.hedging(answer),
        sg.abrupt_end(answer),
    ):
        assert sig == sg.OK, sig.reason


def test_hedging() -> None:
    assert sg.hedging("The capital of Australia is Canberra.").value == 1.0
    assert sg.hedging("However, some say Sydney; it is Canberra.").value == 1.0
    assert sg.hedging("I'm not sure, but I think it is Sydney. Wait.").value < 0.5


def test_question_text_takes_last_user_turn() -> None:
    req = {
        "messages": [
            {"role": "system", "content": "be nice"},
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "second"}]},
        ]
    }
    assert sg.question_text(req) == "second"


@pytest.mark.parametrize(
    "text",
    [
        "Use this:\n```cpp\nstd::cout << x;\n```",
        "The answer is **42**",
        "Take vitamin A",
        "Step one: mix.\n---",
        "It is not what I thought (at first).",
    ],
)
def test_abrupt_end_ignores_finished_markdown_and_code(text: str) -> None:
    assert sg.abrupt_end(text).value == 1.0


# --- worded arithmetic (issue 17) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "wrong, right",
    [
        ("17 times 23 = 60", "17 times 23 = 391"),
        ("15% of 80 is 20.", "15% of 80 is 12."),
        ("15 percent of 80 equals 10", "15 percent of 80 equals 12"),
        ("12 plus 30 is 40", "12 plus 30 is 42"),
        ("100 minus 35 makes 75", "100 minus 35 makes 65"),
        ("84 divided by 4 is 20", "84 divided by 4 is 21"),
        ("twice 15 is 25", "twice 15 is 30"),
        ("half of 90 is 40", "half of 90 is 45"),
        ("12 squared is 124", "12 squared is 144"),
        ("the sum of 8 and 9 is 18", "the sum of 8 and 9 is 17"),
        ("17 times 23 plus 4 is 399", "17 times 23 plus 4 is 395"),
        ("12 multiplied by 3 gives 30", "12 multiplied by 3 gives 36"),
    ],
)
def test_worded_arithmetic_is_rechecked(wrong: str, right: str) -> None:
    assert sg.arithmetic(wrong).value < 1, wrong
    assert sg.arithmetic(right).value == 1.0, right


@pytest.mark.parametrize(
    "text",
    [
        "She is 5 times as old as her 3 cousins.",
        "It rained 3 times in 10 days.",
        "Twice a week, 20 people came.",
        "In 2020, 15% of the 80 staff left.",
        "Step 1 is 10 minutes, step 2 is 5 minutes.",
    ],
)
def test_words_that_are_not_arithmetic_are_left_alone(text: str) -> None:
    assert sg.arithmetic(text).value == 1.0


@pytest.mark.parametrize(
    "question, wrong, right",
    [
        ("What is 17 times 23?", "60", "391"),
        ("What is 15% of 80?", "It is 20.", "It is 12."),
        ("Calculate 144 divided by 12", "The result is 14.", "144 / 12 = 12"),
        ("what's 12*7", "86", "12 x 7 = 84"),
    ],
)
def test_the_calculation_the_question_asks_for(question: str, wrong: str, right: str) -> None:
    assert sg.computation(question, wrong).value == 0.0
    assert sg.computation(question, right).value == 1.0
    assert sg.computation(question, "I'm not sure.").value == 1.0  # no number: left to the other signals


def test_computation_ignores_word_problems_and_other_questions() -> None:
    assert sg.asked_expression(Q_MATHS) is None
    assert sg.asked_expression("What is the capital of France?") is None
    assert sg.asked_expression("What is 3 + 4 and what is 5 + 6?") is None  # two calculations: not a bare one


# --- invented figures (issue 17) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "question, invented",
    [
        ("What is your pricing?", "$10,598.62"),
        ("How much do you charge for shipping?", "Shipping costs 4.99 per order."),
        ("When will my order arrive?", "Your order will arrive on March 12."),
        ("What are your opening hours?", "We are open from 9am to 5pm."),
        ("What is the name of my company?", "Your company is called Brightwave Solutions."),
        ("What was our revenue last quarter?", "Your revenue was 2.4 million."),
    ],
)
def test_invented_figures_are_flagged(question: str, invented: str) -> None:
    assert sg.asks_unknowable_figure(question)
    assert sg.invented_figure(question, question, invented).value == 0.0


def test_figures_from_the_conversation_or_a_calculation_are_not_invented() -> None:
    ctx = "Our plans: Basic $12 per month, Pro $30 per month.\nWhat is your pricing for a year of Pro?"
    assert (
        sg.invented_figure(
            ctx, "What is your pricing for a year of Pro?", "Pro is $30 per month, so 12 * 30 = 360 a year."
        ).value
        == 1.0
    )
    honest = "I don't have your price list. Please share it, or check the pricing page."
    assert sg.invented_figure("What is your pricing?", "What is your pricing?", honest).value == 1.0
    assert sg.refusal("What is your pricing?", "I don't have access to your pricing.").value == 1.0


@pytest.mark.parametrize(
    "question",
    [
        "What is the capital of Japan?",
        "How much does a new car cost in Germany?",
        Q_MATHS,
        "When did the Berlin Wall fall?",
        "What's the probability that you roll a 6 twice?",
    ],
)
def test_questions_about_public_facts_are_not_unknowable(question: str) -> None:
    assert not sg.asks_unknowable_figure(question)
    assert sg.invented_figure(question, question, "It was 1989 and cost $25,000.").value == 1.0


def test_maths_checks_finish_on_pathological_text() -> None:
    """Long blank runs (markdown tables) and long sums made the expression patterns backtrack for minutes
    (a 113,000-character arena-hard answer took 377 s); with the fix this test returns at once."""
    table = "| a |" + " " * 50_000 + "| total: 3 * 4 = 13 |"
    long_sum = "Total costs = " + " + ".join(["3600"] * 60)
    assert sg.arithmetic(table).value < 1  # still read, after the blank run
    assert sg.arithmetic(long_sum).value == 1.0 and sg.dead_end(Q_MATHS, long_sum).value == 1.0
    assert sg.arithmetic("9" * 20_000 + " times 3 is 4").value == 1.0  # beyond MAX_MATHS_CHARS: not read
