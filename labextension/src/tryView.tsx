/** Send one of your images to a ready deployment: what it found, drawn on the image and listed, and the raw JSON. */
import * as React from 'react';

import { Deployments, DeploymentsAPI, errorMessage } from './api';
import { describeFindings, formatBox, formatPercent } from './deploymentsState';
import { ErrorNotice, Loading } from './notice';

interface IAnswer<T> {
  value: T | null;
  error: string | null;
  busy: boolean;
}

const WAITING = { value: null, error: null, busy: true };

function Findings(props: { prediction: Deployments.IPrediction }): JSX.Element {
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
  const input = React.useRef<HTMLInputElement>(null);
  const region = React.useRef<HTMLDivElement>(null);

  // it may open by itself (a try just started) below the fold: bring the drop zone into sight
  React.useEffect(() => {
    region.current?.scrollIntoView?.({ block: 'nearest' });
  }, []);

  React.useEffect(() => {
    if (!file) {
      return;
    }
    const controller = new AbortController();
    const live = () => !controller.signal.aborted;
    let url: string | null = null;
    setJson(WAITING);
    setImage(WAITING);
    // both at once: the list shows as soon as it comes, the drawing when it is done
    api.predictJSON(deployment, file, {}, controller.signal).then(
      value => live() && setJson({ value, error: null, busy: false }),
      e => live() && setJson({ value: null, error: errorMessage(e), busy: false })
    );
    api.predictImage(deployment, file, {}, controller.signal).then(
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
  }, [api, deployment.id, file]);

  const choose = (files: FileList | null) => {
    if (files?.length) {
      setFile(files[0]);
    }
  };

  const errors = [...new Set([json?.error, image?.error].filter((e): e is string => Boolean(e)))];
  const prediction = json?.value?.predictions;
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
          <img src={image.value} alt={`${file?.name ?? 'The image'} with what the module found drawn on it`} />
          <figcaption className="jp-ReefLab-muted">{file?.name}, as the module sees it</figcaption>
        </figure>
      )}
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
