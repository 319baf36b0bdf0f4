/** The sidebar icon: a controller linked to two engines. */
import { LabIcon } from '@jupyterlab/ui-components';

const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <circle cx="12" cy="4.5" r="3"/>
    <circle cx="5" cy="18.5" r="3"/>
    <circle cx="19" cy="18.5" r="3"/>
    <path d="M11 7h2v4.3l5 4.1-1.3 1.5-4.7-3.9-4.7 3.9-1.3-1.5 5-4.1z"/>
  </g>
</svg>`;

export const clustersIcon = new LabIcon({ name: 'ipar_widgets:clusters', svgstr: svg });
