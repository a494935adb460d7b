/** Send one of your images to a ready deployment: what it found, drawn on the image and listed, and the raw JSON. */
import * as React from 'react';

import { Deployments, DeploymentsAPI, errorMessage } from './api';
import { describeFindings, formatBox, formatPercent } from './deploymentsState';
import { ErrorNotice, Loading } from './notice';
import { Zoomable } from './zoom';

interface IAnswer<T> {
  value: T | null;
  error: string | null;
  busy: boolean;
}

const WAITING = { value: null, error: null, busy: true };
/** how long the confidence slider rests before the module is asked again with it */
const CONF_SETTLE_MS = 300;

/** Only the boxes at or above the threshold: what the module answers when asked with it. */
function atThreshold(prediction: Deployments.IPrediction, threshold: number | null): Deployments.IPrediction {
  if (threshold === null || !prediction.detections) {
    return prediction;
  }
  return { ...prediction, detections: prediction.detections.filter(d => d.confidence >= threshold) };
}

/** The detector's confidence threshold: boxes below it are left out (the module is asked again once it rests). */
function ConfidenceSlider(props: { value: number; onChange: (value: number) => void }): JSX.Element {
  return (
    <label className="jp-ReefLab-field jp-ReefLab-confidence">
      <span>
        Confidence at least <strong>{formatPercent(props.value)}</strong>
      </span>
      <input
        type="range"
        min={0.05}
        max={0.95}
        step={0.05}
        value={props.value}
        aria-label="Confidence threshold"
        title="Lower finds more, with more false alarms; higher keeps only the surest boxes"
        onChange={e => props.onChange(Number(e.currentTarget.value))}
      />
    </label>
  );
}

export function Findings(props: { prediction: Deployments.IPrediction }): JSX.Element {
  const { prediction } = props;
  return (
    <div className="jp-ReefLab-findings">
      <p>
        <strong>{describeFindings(prediction)}</strong>{' '}
        <span className="jp-ReefLab-muted">
          ({prediction.width} × {prediction.height} px, {Math.round(prediction.time_ms)} ms)
        </span>
      </p>
      {prediction.detections && prediction.detections.length > 0 && (
        <table className="jp-ReefLab-table" aria-label="Objects found">
          <thead>
            <tr>
              <th>Object</th>
              <th>Confidence</th>
              <th>Box (pixels)</th>
            </tr>
          </thead>
          <tbody>
            {prediction.detections.map((d, i) => (
              <tr key={i}>
                <td>{d.label}</td>
                <td>{formatPercent(d.confidence)}</td>
                <td>{formatBox(d.box)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {prediction.classes && prediction.classes.length > 0 && (
        <table className="jp-ReefLab-table" aria-label="Classes">
          <thead>
            <tr>
              <th>Class</th>
              <th>Probability</th>
            </tr>
          </thead>
          <tbody>
            {prediction.classes.map(c => (
              <tr key={c.class_id}>
                <td>{c.label}</td>
                <td>{formatPercent(c.probability)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

export function TryView(props: {
  deployment: Deployments.IDeployment;
  api: Pick<DeploymentsAPI, 'predictJSON' | 'predictImage'>;
}): JSX.Element {
  const { deployment, api } = props;
  const [file, setFile] = React.useState<File | null>(null);
  const [json, setJson] = React.useState<IAnswer<Deployments.IPredictAnswer> | null>(null);
  const [image, setImage] = React.useState<IAnswer<string> | null>(null);
  const [dragging, setDragging] = React.useState(false);
  // the slider's position (null: the module's default), and the threshold the module was last asked with
  const [threshold, setThreshold] = React.useState<number | null>(null);
  const [asked, setAsked] = React.useState<number | null>(null);
  const input = React.useRef<HTMLInputElement>(null);
  const region = React.useRef<HTMLDivElement>(null);
  const sent = React.useRef<File | null>(null);

  // it may open by itself (a try just started) below the fold: bring the drop zone into sight
  React.useEffect(() => {
    region.current?.scrollIntoView?.({ block: 'nearest' });
  }, []);

  React.useEffect(() => {
    if (threshold === asked) {
      return;
    }
    const timer = setTimeout(() => setAsked(threshold), CONF_SETTLE_MS);
    return () => clearTimeout(timer);
  }, [threshold, asked]);

  React.useEffect(() => {
    if (!file) {
      return;
    }
    const options: Deployments.PredictOptions = asked === null ? {} : { conf: asked };
    const controller = new AbortController();
    const live = () => !controller.signal.aborted;
    let url: string | null = null;
    // the same image at another threshold: what is shown stays (and the slider with it) until the answer comes
    const again = sent.current === file;
    sent.current = file;
    setJson(previous => (again && previous ? { ...previous, error: null, busy: true } : WAITING));
    setImage(previous => (again && previous ? { ...previous, error: null, busy: true } : WAITING));
    // both at once: the list shows as soon as it comes, the drawing when it is done
    api.predictJSON(deployment, file, options, controller.signal).then(
      value => live() && setJson({ value, error: null, busy: false }),
      e => live() && setJson({ value: null, error: errorMessage(e), busy: false })
    );
    api.predictImage(deployment, file, options, controller.signal).then(
      blob => {
        if (live()) {
          url = URL.createObjectURL(blob);
          setImage({ value: url, error: null, busy: false });
        }
      },
      e => live() && setImage({ value: null, error: errorMessage(e), busy: false })
    );
    return () => {
      controller.abort();
      if (url) {
        URL.revokeObjectURL(url);
      }
    };
  }, [api, deployment.id, file, asked]);

  const choose = (files: FileList | null) => {
    if (files?.length) {
      setFile(files[0]);
    }
  };

  const errors = [...new Set([json?.error, image?.error].filter((e): e is string => Boolean(e)))];
  const answer = json?.value?.predictions;
  const prediction = answer && atThreshold(answer, threshold);
  const sliderValue = threshold ?? answer?.conf;
  return (
    <div ref={region} className="jp-ReefLab-try" role="region" aria-label={`Try ${deployment.title}`}>
      <div
        className={`jp-ReefLab-drop${dragging ? ' jp-mod-dragging' : ''}`}
        onDragOver={e => {
          e.preventDefault();
          setDragging(true);
        }}
        onDragLeave={() => setDragging(false)}
        onDrop={e => {
          e.preventDefault();
          setDragging(false);
          choose(e.dataTransfer.files);
        }}
      >
        <span>Drop an image here, or</span>
        <button type="button" className="jp-ReefLab-button" onClick={() => input.current?.click()}>
          Choose an image…
        </button>
        <input
          ref={input}
          type="file"
          accept="image/*"
          hidden
          aria-label="Image to send"
          onChange={e => {
            choose(e.target.files);
            e.target.value = ''; // the same file again sends again
          }}
        />
      </div>
      {file && (json?.busy || image?.busy) && <Loading>Sending {file.name} to the module…</Loading>}
      {errors.map(e => (
        <ErrorNotice key={e} message={e} />
      ))}
      {image?.value && (
        <figure className="jp-ReefLab-annotated">
          <Zoomable label={`${file?.name ?? 'The image'}, as the module sees it`}>
            <img src={image.value} alt={`${file?.name ?? 'The image'} with what the module found drawn on it`} />
          </Zoomable>
          <figcaption className="jp-ReefLab-muted">{file?.name}, as the module sees it</figcaption>
        </figure>
      )}
      {typeof sliderValue === 'number' && <ConfidenceSlider value={sliderValue} onChange={setThreshold} />}
      {prediction && <Findings prediction={prediction} />}
      {json?.value && (
        <details className="jp-ReefLab-json">
          <summary>Answer as JSON</summary>
          <pre>{JSON.stringify(json.value, null, 2)}</pre>
        </details>
      )}
    </div>
  );
}
