/** Small labels on module cards and details: source, tasks, data types, invalid metadata, no trained weights. */
import * as React from 'react';

import { Catalog } from './api';
import { FACET_LABELS, SOURCE_LABELS } from './marketplaceState';

export function SourceBadge(props: { source: Catalog.Source }): JSX.Element {
  const { label, title } = SOURCE_LABELS[props.source] ?? { label: props.source, title: '' };
  return (
    <span className="jp-ReefLab-badge jp-ReefLab-badge-source" title={title}>
      {label}
    </span>
  );
}

export function InvalidBadge(): JSX.Element {
  return (
    <span
      className="jp-ReefLab-badge jp-ReefLab-badge-invalid"
      title="Its description does not follow the ai4-metadata standard; open it to see what is wrong"
    >
      invalid metadata
    </span>
  );
}

/** A module without trained weights (a network built from a yaml): to be trained before it finds anything. */
export function UntrainedBadge(): JSX.Element {
  return (
    <span className="jp-ReefLab-badge jp-ReefLab-badge-untrained" title="No trained weights: train it first">
      not trained
    </span>
  );
}

/** Tasks and data types of a module, each as a badge with the facet in its tooltip. */
export function FacetBadges(props: { card: Catalog.ICard; facets?: Catalog.Facet[] }): JSX.Element | null {
  const facets = props.facets ?? ['tasks', 'data-type'];
  const badges = facets.flatMap(facet =>
    (props.card[facet] ?? []).map(value => (
      <span
        key={`${facet}:${value}`}
        className={`jp-ReefLab-badge jp-ReefLab-badge-${facet}`}
        title={FACET_LABELS[facet]}
      >
        {value}
      </span>
    ))
  );
  return badges.length ? <>{badges}</> : null;
}
