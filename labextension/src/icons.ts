/** The extension's icons, themed by JupyterLab's `jp-icon*` classes. */

import { LabIcon } from '@jupyterlab/ui-components';

import jobsSvg from '../style/icons/jobs.svg';

/** The Jobs panel's icon in the left bar. */
export const jobsIcon = new LabIcon({
  name: 'jupyter-jobs:jobs',
  svgstr: jobsSvg
});
