"""The Gradio page: three tabs (Text, Click, Everything) over :mod:`repvit_plugins.app.services`."""
from __future__ import annotations

import functools
import time
from typing import Any, Sequence

from ..options import REALTIME_SAM, ModelOptions, PipelineOptions, option_specs
from ..runtime.resources import example_images_dir
from .services import (
    TABLE_HEADERS,
    ClickState,
    DemoError,
    DemoModels,
    prepare_image,
    run_click_mode,
    run_everything_mode,
    run_text_mode,
)

TEXT_CONTROLS = ("box_threshold", "text_threshold", "nms", "max_detections")
"""The :class:`~repvit_plugins.options.PipelineOptions` the Text tab offers, in the order ``/text_mode`` takes them."""
SPEED_HELP = next(spec.help for spec in option_specs(ModelOptions) if spec.name == "speed")
API_NAMES = ("text_mode", "click", "clear_clicks", "everything_mode")
"""The page's API endpoints (``gradio_client``: ``client.predict(..., api_name="/text_mode")``); each parameter is
named after its function argument."""
EXAMPLES_DIR = example_images_dir()
DEFAULT_MAX_SIDE = 1024
DEFAULT_MAX_FILE_SIZE = "10mb"


def _examples(prompts: dict[str, str]) -> list[list[str]]:
    return [[str(EXAMPLES_DIR / name), prompt] for name, prompt in prompts.items() if (EXAMPLES_DIR / name).is_file()]


def _upload_image_component():
    """``gr.Image`` that hands the uploaded file to our robust decoder instead of decoding it itself.

    Gradio's own decoding fails with a bare "Error" on a non-image upload; ours names
    the problem. The path is Gradio's upload cache, never one a visitor chooses.
    """
    import gradio as gr

    class UploadedImage(gr.Image):
        is_template = True  # rendered by Gradio's image front end

        def preprocess(self, payload):
            return None if payload is None else payload.path

    return UploadedImage


def _shown(call):
    """Turn :class:`DemoError` into an error shown on the page (the server keeps running)."""
    import gradio as gr

    @functools.wraps(call)  # keeps the signature: Gradio injects gr.SelectData by annotation
    def wrapper(*args):
        try:
            return call(*args)
        except DemoError as err:
            raise gr.Error(str(err), duration=None) from err

    return wrapper


def build_app(models: DemoModels, *, max_side: int = DEFAULT_MAX_SIDE, status: str = "",
              sam_models: Sequence[str] = (), speeds: Sequence[str] = ()):
    """Build the ``gr.Blocks`` page; ``status`` is a Markdown note shown on top (e.g. missing weights).

    ``sam_models``: zoo names offered in the page's SAM model choice (the first is the default; none: no choice).
    ``speeds``: speed presets offered on the Text tab (the first is the demo's own; none: no choice); choosing
    ``realtime`` also switches the SAM choice to its pick. The endpoints a script can call are :data:`API_NAMES`.
    """
    import gradio as gr

    UploadedImage = _upload_image_component()

    def text_mode(sam_model, speed, image, prompt, box_threshold, text_threshold, nms, max_detections):
        prepared = prepare_image(image, max_side)
        try:
            options = PipelineOptions(box_threshold=box_threshold, text_threshold=text_threshold, nms=nms,
                                      max_detections=max_detections)
        except ValueError as err:
            raise DemoError(str(err)) from err
        start = time.perf_counter()
        annotated, rows, files = run_text_mode(models, prepared, prompt, options, sam_model, speed)
        seconds = time.perf_counter() - start
        return annotated, rows, files, _note(prepared.note, f"{len(rows)} detection(s) in {seconds:.1f} s.")

    def everything_mode(sam_model, image, points_per_side, iou_thresh, stability_thresh):
        prepared = prepare_image(image, max_side)
        annotated, rows, files = run_everything_mode(models, prepared, points_per_side, iou_thresh, stability_thresh,
                                                     sam_model)
        return annotated, rows, files, _note(prepared.note, f"{len(rows)} segment(s).")

    def click(sam_model, image, mode, state: ClickState, evt: gr.SelectData):
        prepared = prepare_image(image, max_side)
        x, y = evt.index
        state.add(float(x), float(y), mode)
        annotated, files = run_click_mode(models, prepared, state, sam_model)
        return annotated, files, state, _note(prepared.note, _click_note(state))

    click.__annotations__["evt"] = gr.SelectData  # a real class, not a postponed string: Gradio injects by type

    def clear_clicks():
        return None, None, ClickState(), "Prompts cleared."

    with gr.Blocks(title="RepViT-SAM grounded segmentation") as page:
        gr.Markdown("# RepViT-SAM: segment by text, by clicks, or everything\n"
                    "Grounding DINO finds boxes for your words; RepViT-SAM turns boxes and clicks into masks.")
        if status:
            gr.Markdown(status, elem_id="status")
        sam_model = gr.Dropdown(list(sam_models), value=sam_models[0] if sam_models else None, label="SAM model",
                                info="the segmenter behind every tab (first use of a model loads it)",
                                visible=len(sam_models) > 1, elem_id="sam-model")
        with gr.Tab("Text", id="text"):
            with gr.Row():
                with gr.Column():
                    text_image = UploadedImage(type="filepath", label="Image", elem_id="text-image")
                    prompt = gr.Textbox(label="Prompt", placeholder="a cat. a remote control.", elem_id="text-prompt")
                    speed = gr.Dropdown(list(speeds), value=speeds[0] if speeds else None, label="Speed",
                                        info=SPEED_HELP, visible=len(speeds) > 1, elem_id="text-speed")
                    text_controls = _option_controls(TEXT_CONTROLS, "text")
                    text_button = gr.Button("Segment", variant="primary", elem_id="text-run")
                with gr.Column():
                    text_output = gr.Image(label="Result", elem_id="text-output", interactive=False)
                    text_note = gr.Markdown(elem_id="text-note")
            text_table = gr.Dataframe(headers=TABLE_HEADERS, label="Detections", elem_id="text-table",
                                      interactive=False)
            text_files = gr.File(label="Downloads (COCO JSON with RLE, PNG masks)", file_count="multiple",
                                 elem_id="text-files")
            examples = _examples({"chelsea.jpg": "a cat.", "coffee.jpg": "a cup. a spoon.",
                                  "astronaut.jpg": "a person. a flag."})
            if examples:
                gr.Examples(examples, inputs=[text_image, prompt])
            text_button.click(_shown(text_mode), [sam_model, speed, text_image, prompt, *text_controls],
                              [text_output, text_table, text_files, text_note], api_name="text_mode")
            if len(sam_models) > 1:  # a page behaviour, not an API: scripts pass sam_model themselves
                speed.change(functools.partial(_sam_of_speed, default=sam_models[0]), [speed], [sam_model],
                             api_visibility="private")
        with gr.Tab("Click", id="click"):
            click_state = gr.State(ClickState())
            with gr.Row():
                with gr.Column():
                    click_image = UploadedImage(type="filepath", label="Image: click to add prompts",
                                                elem_id="click-image")
                    click_mode = gr.Radio(["positive point", "negative point", "box corner"], value="positive point",
                                          label="A click adds", elem_id="click-mode")
                    clear = gr.Button("Clear prompts", elem_id="click-clear")
                with gr.Column():
                    click_output = gr.Image(label="Mask", elem_id="click-output", interactive=False)
                    click_note = gr.Markdown("The image is embedded once; every click after the first answers fast.",
                                             elem_id="click-note")
                    click_files = gr.File(label="Downloads", file_count="multiple", elem_id="click-files")
            click_image.select(_shown(click), [sam_model, click_image, click_mode, click_state],
                               [click_output, click_files, click_state, click_note], api_name="click")
            gr.on([click_image.upload, clear.click], clear_clicks, None,
                  [click_output, click_files, click_state, click_note], api_name="clear_clicks")
        with gr.Tab("Everything", id="everything"):
            with gr.Row():
                with gr.Column():
                    every_image = UploadedImage(type="filepath", label="Image", elem_id="every-image")
                    points_per_side = gr.Slider(4, 64, value=32, step=1, label="Points per side",
                                                elem_id="every-points")
                    iou_thresh = gr.Slider(0.0, 1.0, value=0.88, step=0.01, label="Predicted IoU threshold",
                                           elem_id="every-iou")
                    stability_thresh = gr.Slider(0.0, 1.0, value=0.95, step=0.01, label="Stability score threshold",
                                                 elem_id="every-stability")
                    every_button = gr.Button("Segment everything", variant="primary", elem_id="every-run")
                with gr.Column():
                    every_output = gr.Image(label="Segments", elem_id="every-output", interactive=False)
                    every_note = gr.Markdown(elem_id="every-note")
            every_table = gr.Dataframe(headers=TABLE_HEADERS, label="Segments", elem_id="every-table",
                                       interactive=False)
            every_files = gr.File(label="Downloads", file_count="multiple", elem_id="every-files")
            every_button.click(_shown(everything_mode),
                               [sam_model, every_image, points_per_side, iou_thresh, stability_thresh],
                               [every_output, every_table, every_files, every_note], api_name="everything_mode")
    page.queue(default_concurrency_limit=1, max_size=16)  # one model run at a time on a small CPU machine
    return page


def _option_controls(names: tuple[str, ...], tab: str) -> list:
    """Gradio inputs for the pipeline options ``names`` (in that order), with their labels, defaults, ranges and
    choices."""
    import gradio as gr

    specs = {spec.name: spec for spec in option_specs(PipelineOptions)}
    controls: list[Any] = []
    for spec in (specs[name] for name in names):
        elem_id = f"{tab}-{spec.name.replace('_', '-')}"
        if spec.choices:
            controls.append(gr.Radio(list(spec.choices), value=spec.default, label=spec.label, info=spec.help,
                                     elem_id=elem_id))
        elif isinstance(spec.default, float):
            controls.append(gr.Slider(spec.low or 0.0, spec.high or 1.0, value=spec.default, step=0.01,
                                      label=spec.label, elem_id=elem_id))
        else:
            controls.append(gr.Number(value=spec.default, precision=0, minimum=spec.low, label=spec.label,
                                      info=spec.help, elem_id=elem_id))
    return controls


def _sam_of_speed(speed: str, default: str) -> str:
    """The SAM choice that goes with a speed preset: ``realtime``'s own pick, else the demo's."""
    return REALTIME_SAM if speed == "realtime" else default


def _note(*parts: str) -> str:
    return " ".join(part for part in parts if part)


def _click_note(state: ClickState) -> str:
    pending = " First box corner set: click the opposite corner." if state.box_corner is not None else ""
    return f"{len(state.points)} point(s){', 1 box' if state.box else ''}.{pending}"


def launch(page, *, host: str = "127.0.0.1", port: int = 7860, max_file_size: str = DEFAULT_MAX_FILE_SIZE,
           block: bool = True, **kwargs: Any):
    """Serve ``page``; uploads above ``max_file_size`` are refused by Gradio with an error on the page."""
    return page.launch(server_name=host, server_port=port, max_file_size=max_file_size, prevent_thread_lock=not block,
                       show_error=True, ssr_mode=False, footer_links=[], **kwargs)


__all__ = ["build_app", "launch"]
